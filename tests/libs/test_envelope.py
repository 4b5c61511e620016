"""CloudEvents 1.0 envelope: Kafka binary mode, HTTP structured and binary modes, validation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from libs.events.envelope import (
    JSON,
    SPECVERSION,
    CloudEvent,
    EnvelopeError,
    from_binary_http,
    from_kafka,
    from_structured,
    header,
    now_rfc3339,
    parse_rfc3339,
    to_kafka,
    to_structured,
)

TIME = "2024-05-01T10:00:00.123Z"


def _event(**kw: object) -> CloudEvent:
    base: dict[str, object] = {
        "type": "io.example.deployed",
        "source": "/ci/pipeline/7",
        "data": {"app": "shop"},
        "subject": "shop",
        "id": "ev-1",
        "time": TIME,
    }
    base.update(kw)
    return CloudEvent.create(**base)  # type: ignore[arg-type]


def _headers(**attrs: str) -> list[tuple[str, bytes]]:
    base = {"specversion": "1.0", "id": "ev-1", "source": "/src", "type": "io.example.t"}
    base.update(attrs)
    return [(f"ce_{k}", v.encode()) for k, v in base.items()]


# --- creating events -------------------------------------------------------------------


def test_create_encodes_objects_as_json_and_fills_id_and_time() -> None:
    ev = CloudEvent.create(type="io.example.t", source="/s", data={"a": [1, 2]})
    assert ev.data == b'{"a":[1,2]}'
    assert ev.datacontenttype == JSON
    assert ev.specversion == SPECVERSION == "1.0"
    assert ev.id and ev.id != CloudEvent.create(type="io.example.t", source="/s").id
    assert ev.time is not None
    assert abs(parse_rfc3339(ev.time) - datetime.now(UTC)) < timedelta(seconds=5)
    assert ev.json() == {"a": [1, 2]}


def test_create_keeps_bytes_as_they_are_and_no_data_as_empty() -> None:
    ev = CloudEvent.create(type="t", source="/s", data=b"\x00\xff", datacontenttype="x/y")
    assert (ev.data, ev.datacontenttype) == (b"\x00\xff", "x/y")
    empty = CloudEvent.create(type="t", source="/s")
    assert (empty.data, empty.datacontenttype) == (b"", None)


def test_now_rfc3339_is_utc_with_milliseconds() -> None:
    text = now_rfc3339()
    assert text.endswith("Z")
    assert len(text) == len("2024-05-01T10:00:00.123Z")
    assert parse_rfc3339(text).utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("ct", "expected"),
    [
        (None, True),
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("application/cloudevents+json", True),
        ("text/json", True),
        ("text/plain", False),
        ("application/protobuf", False),
        ("application/jsonx", False),
    ],
)
def test_is_json(ct: str | None, expected: bool) -> None:
    assert CloudEvent(id="1", source="/s", type="t", datacontenttype=ct).is_json() is expected


def test_json_of_data_that_is_not_json_is_an_envelope_error() -> None:
    ev = CloudEvent(id="1", source="/s", type="t", data=b"{nope")
    with pytest.raises(EnvelopeError, match="data is not valid JSON"):
        ev.json()


# --- Kafka binary content mode ---------------------------------------------------------


def test_kafka_binary_mode_round_trip() -> None:
    ev = _event(extensions={"partitionkey": "shop", "tenant": "acme"})
    key, value, headers = to_kafka(ev)
    assert key == b"shop"
    assert value == b'{"app":"shop"}'
    assert headers == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"ev-1"),
        ("ce_source", b"/ci/pipeline/7"),
        ("ce_type", b"io.example.deployed"),
        ("content-type", b"application/json"),
        ("ce_subject", b"shop"),
        ("ce_time", TIME.encode()),
        ("ce_partitionkey", b"shop"),
        ("ce_tenant", b"acme"),
    ]
    back = from_kafka(value, headers)
    assert back == ev
    assert back.extensions == {"partitionkey": "shop", "tenant": "acme"}
    assert back.datacontenttype == "application/json"


def test_kafka_without_partitionkey_has_no_key_and_extra_headers_are_appended() -> None:
    ev = _event(data=b"raw", datacontenttype="text/plain")
    key, value, headers = to_kafka(ev, extra=[("traceparent", b"00-abc")])
    assert key is None
    assert value == b"raw"
    assert headers[-1] == ("traceparent", b"00-abc")
    assert header(headers, "content-type") == b"text/plain"
    assert header(headers, "ce_partitionkey") is None
    back = from_kafka(value, headers)  # non-ce headers are not attributes
    assert back == ev
    assert "traceparent" not in back.extensions


def test_kafka_event_without_optional_attributes() -> None:
    ev = CloudEvent(id="x", source="/s", type="t")
    key, value, headers = to_kafka(ev)
    assert (key, value) == (None, b"")
    assert [k for k, _ in headers] == ["ce_specversion", "ce_id", "ce_source", "ce_type"]
    back = from_kafka(None, headers)
    assert back == ev
    assert back.datacontenttype is None and back.time is None and back.subject is None


def test_from_kafka_reads_content_type_case_insensitively_and_dataschema() -> None:
    headers = [*_headers(dataschema="https://schemas/x.json"), ("Content-Type", b"text/csv")]
    ev = from_kafka(b"a,b", headers)
    assert ev.datacontenttype == "text/csv"
    assert ev.dataschema == "https://schemas/x.json"
    assert ev.extensions == {}


def test_several_records_decode_independently() -> None:
    events = [
        _event(id=f"ev-{i}", data={"i": i}, extensions={"partitionkey": f"p{i % 2}"})
        for i in range(5)
    ]
    records = [to_kafka(ev) for ev in events]
    assert [key for key, _, _ in records] == [b"p0", b"p1", b"p0", b"p1", b"p0"]
    decoded = [from_kafka(value, headers) for _, value, headers in records]
    assert decoded == events
    assert [ev.json()["i"] for ev in decoded] == list(range(5))


@pytest.mark.parametrize("missing", ["id", "source", "type", "specversion"])
def test_kafka_missing_required_attribute(missing: str) -> None:
    headers = [(k, v) for k, v in _headers() if k != f"ce_{missing}"]
    with pytest.raises(EnvelopeError) as info:
        from_kafka(b"", headers)
    assert str(info.value) == f"missing required CloudEvents attribute '{missing}'"


@pytest.mark.parametrize("missing", ["id", "source", "type"])
def test_kafka_empty_required_attribute_counts_as_missing(missing: str) -> None:
    headers = [(k, b"" if k == f"ce_{missing}" else v) for k, v in _headers()]
    with pytest.raises(EnvelopeError, match=f"missing required CloudEvents attribute '{missing}'"):
        from_kafka(b"", headers)


def test_kafka_header_without_value_counts_as_missing() -> None:
    headers = [(k, None if k == "ce_id" else v) for k, v in _headers()]
    with pytest.raises(EnvelopeError, match="missing required CloudEvents attribute 'id'"):
        from_kafka(b"", headers)  # type: ignore[arg-type]


def test_kafka_record_without_ce_headers() -> None:
    for headers in ([], [("traceparent", b"x")], [("x-marker", b"1"), ("key", b"v")]):
        with pytest.raises(EnvelopeError) as info:
            from_kafka(b"{}", headers)
        assert str(info.value) == ("no ce_* headers: not a CloudEvent in Kafka binary content mode")


def test_kafka_record_with_only_a_content_type_is_not_a_cloudevent() -> None:
    with pytest.raises(EnvelopeError) as info:
        from_kafka(b"{}", [("content-type", b"application/json")])
    assert str(info.value).startswith("no ce_* headers")


def test_specversion_0_3_is_refused() -> None:
    with pytest.raises(EnvelopeError) as info:
        from_kafka(b"", _headers(specversion="0.3"))
    assert str(info.value) == "unsupported specversion '0.3': only '1.0' is accepted"


@pytest.mark.parametrize("name", ["Bad-Name", "a" * 21, "under_score", "UPPER", "dot.ted"])
def test_invalid_attribute_names_are_refused(name: str) -> None:
    headers = [*_headers(), (f"ce_{name}", b"v")]
    with pytest.raises(EnvelopeError) as info:
        from_kafka(b"", headers)
    assert str(info.value) == (
        f"invalid attribute name {name!r}: CloudEvents names are 1-20 lower-case letters or digits"
    )


def test_attribute_names_of_20_lower_case_letters_or_digits_are_fine() -> None:
    name = "abcdefghij0123456789"
    ev = from_kafka(b"", [*_headers(), (f"ce_{name}", b"v")])
    assert ev.extensions == {name: "v"}


def test_attribute_values_longer_than_2048_characters_are_refused() -> None:
    assert from_kafka(b"", _headers(subject="s" * 2048)).subject == "s" * 2048
    with pytest.raises(EnvelopeError, match="attribute 'subject' is longer than 2048 characters"):
        from_kafka(b"", _headers(subject="s" * 2049))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "attribute 'time': not an RFC 3339 timestamp: 'yesterday'"),
        (
            "2024-13-01T00:00:00Z",
            "attribute 'time': not an RFC 3339 timestamp: '2024-13-01T00:00:00Z'",
        ),
        (
            "2024-05-01T10:00:00",
            "attribute 'time': RFC 3339 timestamp has no UTC offset: '2024-05-01T10:00:00'",
        ),
    ],
)
def test_time_must_be_rfc3339_with_an_offset(value: str, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        from_kafka(b"", _headers(time=value))
    assert str(info.value) == reason


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:00:00z",
        "2024-05-01T10:00:00.5+02:00",
        "2024-05-01T10:00:00.123456-07:30",
    ],
)
def test_rfc3339_times_with_an_offset_are_accepted(value: str) -> None:
    assert from_kafka(b"", _headers(time=value)).time == value


def test_parse_rfc3339_gives_an_aware_datetime() -> None:
    assert parse_rfc3339("2024-05-01T12:00:00+02:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_rfc3339("2024-05-01T12:00:00")


def test_non_utf8_headers_are_refused() -> None:
    headers = [(k, b"\xff\xfe" if k == "ce_source" else v) for k, v in _headers()]
    with pytest.raises(EnvelopeError) as info:
        from_kafka(b"", headers)
    assert str(info.value) == "header 'ce_source' is not UTF-8"
    with pytest.raises(EnvelopeError) as info:
        from_kafka(b"", [*_headers(), ("content-type", b"text/\xff")])
    assert str(info.value) == "header 'content-type' is not UTF-8"


# --- HTTP structured mode ------------------------------------------------------------


def _structured(**kw: object) -> dict[str, object]:
    obj: dict[str, object] = {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/tool",
        "type": "io.example.t",
    }
    obj.update(kw)
    return obj


def test_structured_json_data() -> None:
    ev = from_structured(
        _structured(data={"a": 1, "b": [True, None]}, time=TIME, subject="x", tenant="acme")
    )
    assert ev.data == b'{"a":1,"b":[true,null]}'
    assert ev.datacontenttype == JSON  # defaulted, as the spec says for structured JSON
    assert ev.json() == {"a": 1, "b": [True, None]}
    assert (ev.id, ev.source, ev.type, ev.time, ev.subject) == (
        "s-1",
        "/tool",
        "io.example.t",
        TIME,
        "x",
    )
    assert ev.extensions == {"tenant": "acme"}


def test_structured_scalar_and_null_json_data() -> None:
    assert from_structured(_structured(data=[1, 2])).data == b"[1,2]"
    assert from_structured(_structured(data=None)).data == b"null"
    assert from_structured(_structured(data="text")).data == b'"text"'  # a JSON string


def test_structured_string_data_with_a_non_json_content_type_is_kept_as_text() -> None:
    ev = from_structured(_structured(data="a,b\n1,2", datacontenttype="text/csv"))
    assert ev.data == b"a,b\n1,2"
    assert ev.datacontenttype == "text/csv"


def test_structured_data_base64() -> None:
    raw = bytes(range(256))
    ev = from_structured(
        _structured(
            data_base64=base64.b64encode(raw).decode(), datacontenttype="application/octet-stream"
        )
    )
    assert ev.data == raw
    assert ev.datacontenttype == "application/octet-stream"


def test_structured_without_data() -> None:
    ev = from_structured(_structured())
    assert ev.data == b""
    assert ev.datacontenttype is None


def test_structured_with_data_and_data_base64_is_refused() -> None:
    with pytest.raises(EnvelopeError) as info:
        from_structured(_structured(data={"a": 1}, data_base64="AA=="))
    assert str(info.value) == "an event may carry 'data' or 'data_base64', not both"


def test_structured_with_invalid_base64_is_refused() -> None:
    with pytest.raises(EnvelopeError, match="'data_base64' is not valid base64"):
        from_structured(_structured(data_base64="not base64!"))


@pytest.mark.parametrize("obj", [[], "event", 42, None, [{"id": "x"}]])
def test_structured_event_must_be_an_object(obj: object) -> None:
    with pytest.raises(EnvelopeError) as info:
        from_structured(obj)
    assert str(info.value) == "a structured CloudEvent must be a JSON object"


@pytest.mark.parametrize("missing", ["id", "source", "type", "specversion"])
def test_structured_missing_required_attribute(missing: str) -> None:
    obj = _structured(data={})
    del obj[missing]
    with pytest.raises(EnvelopeError) as info:
        from_structured(obj)
    assert str(info.value) == f"missing required CloudEvents attribute '{missing}'"


def test_structured_attribute_types() -> None:
    with pytest.raises(EnvelopeError, match="attribute 'id' must be a string"):
        from_structured(_structured(id=7))
    with pytest.raises(
        EnvelopeError, match="attribute 'extra' must be a string, integer or boolean"
    ):
        from_structured(_structured(extra={"nested": 1}))
    ev = from_structured(_structured(count=3, flag=True))
    assert ev.extensions == {"count": "3", "flag": "True"}


def test_structured_validation_applies_to_attribute_names_and_time() -> None:
    with pytest.raises(EnvelopeError, match="invalid attribute name 'Bad-Name'"):
        from_structured(_structured(**{"Bad-Name": "x"}))
    with pytest.raises(EnvelopeError, match="RFC 3339 timestamp has no UTC offset"):
        from_structured(_structured(time="2024-05-01T10:00:00"))
    with pytest.raises(EnvelopeError, match=r"unsupported specversion '0\.3'"):
        from_structured(_structured(specversion="0.3"))


def test_a_batch_of_structured_events_is_decoded_one_by_one() -> None:
    batch = orjson.loads(
        orjson.dumps(
            [
                _structured(id="b-1", data={"n": 1}),
                _structured(id="b-2", data_base64=base64.b64encode(b"\x01").decode()),
                {"id": "b-3"},
                "not an event",
                _structured(id="b-5", specversion="0.3"),
            ]
        )
    )
    results: list[CloudEvent | str] = []
    for item in batch:
        try:
            results.append(from_structured(item))
        except EnvelopeError as exc:
            results.append(str(exc))
    assert isinstance(results[0], CloudEvent) and results[0].json() == {"n": 1}
    assert isinstance(results[1], CloudEvent) and results[1].data == b"\x01"
    assert results[2] == "missing required CloudEvents attribute 'source'"
    assert results[3] == "a structured CloudEvent must be a JSON object"
    assert results[4] == "unsupported specversion '0.3': only '1.0' is accepted"


# --- to_structured ----------------------------------------------------------------------


def test_to_structured_round_trip_json() -> None:
    ev = _event(extensions={"tenant": "acme"})
    out = to_structured(ev)
    assert out == {
        "specversion": "1.0",
        "id": "ev-1",
        "source": "/ci/pipeline/7",
        "type": "io.example.deployed",
        "datacontenttype": "application/json",
        "subject": "shop",
        "time": TIME,
        "tenant": "acme",
        "data": {"app": "shop"},
    }
    assert from_structured(orjson.loads(orjson.dumps(out))) == ev


def test_to_structured_round_trip_binary_and_text() -> None:
    binary = _event(data=b"\x00\x01\xff", datacontenttype="application/octet-stream")
    out = to_structured(binary)
    assert "data" not in out
    assert base64.b64decode(out["data_base64"]) == b"\x00\x01\xff"
    assert from_structured(out) == binary

    text = _event(data=b"plain words", datacontenttype="text/plain")
    assert from_structured(to_structured(text)) == text


def test_to_structured_of_data_declared_json_but_not_json_uses_base64() -> None:
    ev = CloudEvent(id="1", source="/s", type="t", data=b"{oops", datacontenttype=JSON)
    out = to_structured(ev)
    assert base64.b64decode(out["data_base64"]) == b"{oops"
    assert from_structured(out) == ev


def test_to_structured_without_data() -> None:
    out = to_structured(CloudEvent(id="1", source="/s", type="t"))
    assert out == {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}


# --- HTTP binary mode -----------------------------------------------------------------


def test_binary_http_mode() -> None:
    headers = {
        "ce-specversion": "1.0",
        "CE-ID": "h-1",
        "Ce-Source": "/hook",
        "ce-type": "io.x.t",
        "ce-time": TIME,
        "ce-tenant": "acme",
        "content-type": "text/plain",
        "user-agent": "curl/8",
        "authorization": "Bearer t",
    }
    ev = from_binary_http(headers, b"hello")
    assert (ev.id, ev.source, ev.type, ev.time) == ("h-1", "/hook", "io.x.t", TIME)
    assert ev.data == b"hello"
    assert ev.datacontenttype == "text/plain"
    assert ev.extensions == {"tenant": "acme"}  # other HTTP headers are not attributes


def test_binary_http_mode_without_content_type() -> None:
    ev = from_binary_http(
        {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}, b""
    )
    assert ev.datacontenttype is None
    assert ev.data == b""


def test_binary_http_mode_errors() -> None:
    with pytest.raises(EnvelopeError, match="no ce-\\* headers"):
        from_binary_http({"content-type": "application/json"}, b"{}")
    with pytest.raises(EnvelopeError, match="missing required CloudEvents attribute 'type'"):
        from_binary_http({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s"}, b"")
    with pytest.raises(EnvelopeError, match=r"unsupported specversion '0\.3'"):
        from_binary_http(
            {"ce-specversion": "0.3", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}, b""
        )
    with pytest.raises(EnvelopeError, match="invalid attribute name 'bad_name'"):
        from_binary_http(
            {
                "ce-specversion": "1.0",
                "ce-id": "1",
                "ce-source": "/s",
                "ce-type": "t",
                "ce-bad_name": "x",
            },
            b"",
        )
