"""Metric and log batches: per-item validation and normalization, and the gateway's precheck."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from libs.events.envelope import CloudEvent
from libs.schemas.opsline.v1.metrics_pb2 import MetricBatch, Sample
from libs.telemetry.logs import LEVELS, parse_log_batch
from libs.telemetry.precheck import precheck
from libs.telemetry.samples import (
    FUTURE_TOLERANCE_MS,
    BatchError,
    decode_batch,
    encode_batch,
    parse_metric_batch,
    parse_ts,
    series_id,
)

NOW_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z
NOW_TEXT = "2024-05-01T10:00:00Z"


def _parse(*samples: object, now_ms: int = NOW_MS):  # type: ignore[no-untyped-def]
    return parse_metric_batch({"samples": list(samples)}, now_ms=now_ms)


def _one_error(sample: object) -> str:
    parsed = _parse(sample)
    assert parsed.samples == [] and parsed.kept == []
    assert len(parsed.errors) == 1, parsed.errors
    return parsed.errors[0]


# --- series ids ------------------------------------------------------------------------


def test_series_id_is_stable_and_independent_of_label_order() -> None:
    a = series_id("http_requests_total", {"method": "GET", "code": "200"})
    b = series_id("http_requests_total", {"code": "200", "method": "GET"})
    assert a == b
    assert len(a) == 16 and int(a, 16) >= 0  # 8-byte hex digest
    # the same inputs in another call (and process) give the same id: a pure function
    assert a == series_id("http_requests_total", dict([("method", "GET"), ("code", "200")]))


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("http_requests_total", {"method": "POST", "code": "200"}),  # other value
        ("http_requests_total", {"method": "GET"}),  # fewer labels
        ("http_requests_total", {"method": "GET", "code": "200", "x": ""}),  # extra empty label
        ("http_requests", {"method": "GET", "code": "200"}),  # other name
        ("http_requests_total", {"methodG": "ET", "code": "200"}),  # shifted key/value boundary
    ],
)
def test_series_id_differs_when_name_or_labels_differ(name: str, labels: dict[str, str]) -> None:
    assert series_id(name, labels) != series_id(
        "http_requests_total", {"method": "GET", "code": "200"}
    )


# --- good samples ----------------------------------------------------------------------


def test_good_samples_are_normalized() -> None:
    parsed = _parse(
        {
            "name": "cpu_seconds",
            "labels": {"host": "a", "cpu": "0"},
            "value": 1.5,
            "ts": "2024-05-01T09:59:00Z",
        },
        {"name": "up", "value": 1, "ts": NOW_MS - 1000},
        {"name": "ns:queue_depth", "value": -3},
    )
    assert parsed.errors == []
    assert parsed.kept == [0, 1, 2]
    first, second, third = parsed.samples
    assert first.name == "cpu_seconds"
    assert dict(first.labels) == {"host": "a", "cpu": "0"}
    assert first.value == 1.5
    assert first.ts_ms == NOW_MS - 60_000
    assert first.series_id == series_id("cpu_seconds", {"cpu": "0", "host": "a"})
    assert (second.value, second.ts_ms, dict(second.labels)) == (1.0, NOW_MS - 1000, {})
    assert second.series_id == series_id("up", {})
    assert third.ts_ms == NOW_MS  # no ts: the time of parsing
    assert third.value == -3.0


def test_series_id_of_samples_ignores_label_order_in_the_input() -> None:
    parsed = _parse(
        {"name": "m", "labels": {"a": "1", "b": "2"}, "value": 1},
        {"name": "m", "labels": {"b": "2", "a": "1"}, "value": 2},
        {"name": "m", "labels": {"a": "1", "b": "3"}, "value": 3},
    )
    ids = [s.series_id for s in parsed.samples]
    assert ids[0] == ids[1] != ids[2]


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2024-05-01T10:00:00Z", NOW_MS),
        ("2024-05-01T12:00:00+02:00", NOW_MS),
        ("2024-05-01T09:59:59.250Z", NOW_MS - 750),
        (NOW_MS - 5, NOW_MS - 5),
        (float(NOW_MS - 5), NOW_MS - 5),
        (0, 0),
        (None, NOW_MS),
    ],
)
def test_ts_forms(ts: object, expected: int) -> None:
    sample = {"name": "m", "value": 1} | ({} if ts is None else {"ts": ts})
    [s] = _parse(sample).samples
    assert s.ts_ms == expected


def test_missing_ts_defaults_to_the_current_time() -> None:
    before = int(time.time() * 1000)
    parsed = parse_metric_batch({"samples": [{"name": "m", "value": 1}]})
    after = int(time.time() * 1000)
    assert before <= parsed.samples[0].ts_ms <= after


def test_ts_up_to_ten_minutes_ahead_is_accepted_and_beyond_refused() -> None:
    parsed = _parse(
        {"name": "m", "value": 1, "ts": NOW_MS + FUTURE_TOLERANCE_MS},
        {"name": "m", "value": 1, "ts": NOW_MS + FUTURE_TOLERANCE_MS + 1},
        {"name": "m", "value": 1, "ts": "2024-05-01T10:11:00Z"},
    )
    assert FUTURE_TOLERANCE_MS == 10 * 60 * 1000
    assert parsed.kept == [0]
    assert parsed.errors == [
        "samples[1].ts: more than 10 minutes in the future",
        "samples[2].ts: more than 10 minutes in the future",
    ]


# --- one reason per bad sample, with its index -----------------------------------------


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ({"value": 1}, "samples[0].name: missing"),
        ({"name": "", "value": 1}, "samples[0].name: missing"),
        ({"name": 7, "value": 1}, "samples[0].name: must be a string"),
        (
            {"name": "9lives", "value": 1},
            "samples[0].name: '9lives' is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
        ),
        (
            {"name": "http-requests", "value": 1},
            "samples[0].name: 'http-requests' is not a valid metric name "
            "([a-zA-Z_:][a-zA-Z0-9_:]*)",
        ),
        ({"name": "m" * 201, "value": 1}, "samples[0].name: longer than 200 characters"),
        ({"name": "m"}, "samples[0].value: missing"),
        ({"name": "m", "value": "12"}, "samples[0].value: not a number (str)"),
        ({"name": "m", "value": True}, "samples[0].value: not a number (bool)"),
        ({"name": "m", "value": [1]}, "samples[0].value: not a number (list)"),
        (
            {"name": "m", "value": float("nan")},
            "samples[0].value: NaN and infinity are not accepted",
        ),
        (
            {"name": "m", "value": float("inf")},
            "samples[0].value: NaN and infinity are not accepted",
        ),
        (
            {"name": "m", "value": float("-inf")},
            "samples[0].value: NaN and infinity are not accepted",
        ),
        (
            {"name": "m", "value": 1, "labels": ["a"]},
            "samples[0].labels: must be an object of string values",
        ),
        (
            {"name": "m", "value": 1, "labels": {f"l{i}": "v" for i in range(33)}},
            "samples[0].labels: 33 labels, at most 32 are allowed",
        ),
        (
            {"name": "m", "value": 1, "labels": {"k": "v" * 1025}},
            "samples[0].labels.k: longer than 1024 characters",
        ),
        ({"name": "m", "value": 1, "labels": {"k": 5}}, "samples[0].labels.k: must be a string"),
        (
            {"name": "m", "value": 1, "labels": {"bad-name": "v"}},
            "samples[0].labels: 'bad-name' is not a valid label name",
        ),
        (
            {"name": "m", "value": 1, "labels": {"1st": "v"}},
            "samples[0].labels: '1st' is not a valid label name",
        ),
        (
            {"name": "m", "value": 1, "labels": {"k" * 101: "v"}},
            f"samples[0].labels: {'k' * 64!r} is not a valid label name",
        ),
        (
            {"name": "m", "value": 1, "ts": "2024-05-01T10:00:00"},
            "samples[0].ts: RFC 3339 timestamp needs a UTC offset: '2024-05-01T10:00:00'",
        ),
        (
            {"name": "m", "value": 1, "ts": "last tuesday"},
            "samples[0].ts: not an RFC 3339 timestamp: 'last tuesday'",
        ),
        (
            {"name": "m", "value": 1, "ts": "1714557600000"},
            "samples[0].ts: not an RFC 3339 timestamp: '1714557600000'",
        ),
        (
            {"name": "m", "value": 1, "ts": True},
            "samples[0].ts: must be RFC 3339 text or epoch milliseconds, not a boolean",
        ),
        (
            {"name": "m", "value": 1, "ts": -1},
            "samples[0].ts: epoch milliseconds must be a finite, non-negative number",
        ),
        (
            {"name": "m", "value": 1, "ts": float("inf")},
            "samples[0].ts: epoch milliseconds must be a finite, non-negative number",
        ),
        (
            {"name": "m", "value": 1, "ts": {"ms": 1}},
            "samples[0].ts: must be RFC 3339 text or epoch milliseconds",
        ),
        ("m 1", "samples[0]: must be an object"),
        (None, "samples[0]: must be an object"),
    ],
)
def test_each_bad_sample_gets_its_reason(sample: object, reason: str) -> None:
    assert _one_error(sample) == reason


def test_limits_are_inclusive() -> None:
    parsed = _parse(
        {"name": "m" * 200, "value": 1},
        {"name": "m", "value": 1, "labels": {f"l{i}": "v" for i in range(32)}},
        {"name": "m", "value": 1, "labels": {"k": "v" * 1024, "k" * 100: "v"}},
    )
    assert parsed.errors == []
    assert parsed.kept == [0, 1, 2]


def test_errors_name_the_position_and_kept_lists_the_good_ones() -> None:
    parsed = _parse(
        {"name": "ok_a", "value": 1},
        {"name": "m", "value": "x"},
        {"name": "ok_b", "value": 2},
        42,
        {"name": "m", "value": 1, "ts": "2024-05-01"},
        {"name": "ok_c", "value": 3},
    )
    assert parsed.kept == [0, 2, 5]
    assert [s.name for s in parsed.samples] == ["ok_a", "ok_b", "ok_c"]
    assert parsed.errors == [
        "samples[1].value: not a number (str)",
        "samples[3]: must be an object",
        "samples[4].ts: RFC 3339 timestamp needs a UTC offset: '2024-05-01'",
    ]


def test_a_name_once_valid_does_not_make_other_names_valid() -> None:
    # the parser caches valid names and label names; the cache must not leak
    assert _parse({"name": "cached_name", "value": 1, "labels": {"cached": "x"}}).errors == []
    assert _one_error({"name": "cached-name", "value": 1}).startswith("samples[0].name:")
    assert _one_error({"name": "cached_name", "value": 1, "labels": {"cached": 1}}) == (
        "samples[0].labels.cached: must be a string"
    )


@pytest.mark.parametrize("name", [["cpu"], {"n": "cpu"}])
def test_an_unhashable_name_is_a_reason_not_a_crash(name: object) -> None:
    parsed = _parse({"name": "good", "value": 1}, {"name": name, "value": 1})
    assert parsed.kept == [0]
    assert parsed.errors == ["samples[1].name: must be a string"]


# --- whole-batch errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([{"name": "m", "value": 1}], "data must be a JSON object with a 'samples' list"),
        ("samples", "data must be a JSON object with a 'samples' list"),
        (None, "data must be a JSON object with a 'samples' list"),
        ({}, "data.samples: missing, or not a list"),
        ({"samples": {"name": "m"}}, "data.samples: missing, or not a list"),
        ({"records": []}, "data.samples: missing, or not a list"),
    ],
)
def test_unusable_batches(data: object, reason: str) -> None:
    with pytest.raises(BatchError) as info:
        parse_metric_batch(data, now_ms=NOW_MS)
    assert str(info.value) == reason


def test_too_many_samples() -> None:
    with pytest.raises(BatchError) as info:
        parse_metric_batch({"samples": [None] * 100_001}, now_ms=NOW_MS)
    assert str(info.value) == "data.samples: 100001 samples, at most 100000 per batch"


def test_an_empty_batch_is_not_an_error_by_itself() -> None:
    parsed = parse_metric_batch({"samples": []}, now_ms=NOW_MS)
    assert (parsed.samples, parsed.errors, parsed.kept) == ([], [], [])


def test_parse_ts_directly() -> None:
    assert parse_ts(None, default_ms=5) == 5
    assert parse_ts("1970-01-01T00:00:01Z", default_ms=5) == 1000
    assert parse_ts(1234.9, default_ms=5) == 1234
    with pytest.raises(ValueError, match="needs a UTC offset"):
        parse_ts("1970-01-01T00:00:01", default_ms=5)


# --- protobuf encoding -----------------------------------------------------------------


def _fields(sample: object) -> tuple[object, ...]:
    return (
        sample.series_id,
        sample.name,
        dict(sample.labels),  # type: ignore[attr-defined]
        sample.ts_ms,
        sample.value,
    )  # type: ignore[attr-defined]


def test_encode_decode_batch_round_trip() -> None:
    parsed = _parse(
        {"name": "a", "labels": {"x": "1", "y": "ü", "z": ""}, "value": 0.1, "ts": NOW_MS},
        {"name": "b", "value": -1e300},
        {"name": "c", "value": 0, "ts": 0},
        {"name": "d", "value": -0.0, "ts": "1960-01-01T00:00:00Z"},  # before the epoch
        {"name": "e", "value": 2**53, "ts": NOW_MS + 1},
        {"name": "a", "labels": {"y": "ü", "x": "1", "z": ""}, "value": 5e-324},
    )
    assert parsed.errors == []
    data = encode_batch(parsed.samples, source_event_id="ev-42")
    assert isinstance(data, bytes) and data
    batch = decode_batch(data)
    assert batch.source_event_id == "ev-42"
    assert [_fields(s) for s in batch.samples] == [_fields(s) for s in parsed.samples]
    assert batch.samples[0].value == 0.1
    assert dict(batch.samples[0].labels) == {"x": "1", "y": "ü", "z": ""}
    assert batch.samples[1].ts_ms == NOW_MS
    assert batch.samples[3].ts_ms == -315_619_200_000
    assert str(batch.samples[3].value) == "-0.0"
    assert batch.samples[5].series_id == batch.samples[0].series_id
    # the same as what the generated protobuf classes make of the same samples
    reference = MetricBatch(
        source_event_id="ev-42",
        samples=[
            Sample(
                series_id=s.series_id,
                name=s.name,
                labels=dict(s.labels),
                ts_ms=s.ts_ms,
                value=s.value,
            )
            for s in parsed.samples
        ],
    )
    assert batch == reference


def test_decode_of_an_empty_batch() -> None:
    batch = decode_batch(encode_batch([], source_event_id=""))
    assert list(batch.samples) == [] and batch.source_event_id == ""
    assert decode_batch(b"") == batch
    assert Sample().ts_ms == 0


# --- log batches -------------------------------------------------------------------------


def test_log_records_are_normalized() -> None:
    records, errors, kept = parse_log_batch(
        {
            "records": [
                {
                    "message": "started",
                    "level": "INFO",
                    "labels": {"pod": "web-1"},
                    "ts": "2024-05-01T09:00:00Z",
                },
                {"message": "disk almost full", "level": "Warning", "ts": NOW_MS - 1},
                {"message": "no level, no ts"},
            ]
        },
        source="/k8s/cluster-a",
        now_ms=NOW_MS,
    )
    assert errors == []
    assert kept == [0, 1, 2]
    first, second, third = records
    assert (first.message, first.level, dict(first.labels)) == ("started", "info", {"pod": "web-1"})
    assert first.ts_ms == NOW_MS - 3_600_000
    assert first.source == "/k8s/cluster-a"
    assert (second.level, second.ts_ms) == ("warning", NOW_MS - 1)
    assert (third.level, third.ts_ms, dict(third.labels)) == ("info", NOW_MS, {})
    assert all(r.source == "/k8s/cluster-a" for r in records)


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_every_level_is_accepted_in_any_case(level: str) -> None:
    records, errors, _ = parse_log_batch(
        {"records": [{"message": "m", "level": level.upper()}]}, source="s", now_ms=NOW_MS
    )
    assert errors == []
    assert records[0].level == level


def test_log_levels_are_the_usual_ones() -> None:
    assert {"trace", "debug", "info", "warn", "warning", "error", "critical", "fatal"} <= LEVELS


def test_bad_log_records_get_their_reasons_with_their_index() -> None:
    records, errors, kept = parse_log_batch(
        {
            "records": [
                {"message": "good"},
                {"level": "info"},
                {"message": ""},
                {"message": 42},
                {"message": "m", "level": "verbose"},
                {"message": "m", "labels": {"k": 1}},
                {"message": "m", "labels": ["k"]},
                "just text",
                {"message": "also good", "level": "error"},
            ]
        },
        source="s",
        now_ms=NOW_MS,
    )
    assert kept == [0, 8]
    assert [r.message for r in records] == ["good", "also good"]
    assert errors == [
        "records[1].message: missing, or not a string",
        "records[2].message: missing, or not a string",
        "records[3].message: missing, or not a string",
        f"records[4].level: 'verbose' is not one of {sorted(LEVELS)}",
        "records[5].labels: must be an object of string values",
        "records[6].labels: must be an object of string values",
        "records[7]: must be an object",
    ]


def test_bad_log_ts_is_refused_with_its_index() -> None:
    _, errors, kept = parse_log_batch(
        {
            "records": [
                {"message": "m", "ts": "2024-05-01T10:00:00"},
                {"message": "m", "ts": "soon"},
                {"message": "m", "ts": NOW_MS},
            ]
        },
        source="s",
        now_ms=NOW_MS,
    )
    assert kept == [2]
    assert len(errors) == 2
    assert errors[0].startswith("records[0].")
    assert "RFC 3339 timestamp needs a UTC offset: '2024-05-01T10:00:00'" in errors[0]
    assert errors[1].startswith("records[1].")
    assert "not an RFC 3339 timestamp: 'soon'" in errors[1]


def test_long_log_messages_are_truncated_to_64_kib() -> None:
    records, errors, _ = parse_log_batch(
        {"records": [{"message": "x" * 70_000}]}, source="s", now_ms=NOW_MS
    )
    assert errors == []
    assert len(records[0].message) == 64 * 1024


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([], "data.records: missing, or not a list"),
        ({}, "data.records: missing, or not a list"),
        ({"records": "x"}, "data.records: missing, or not a list"),
        ({"records": [None] * 50_001}, "data.records: 50001 records, at most 50000"),
    ],
)
def test_unusable_log_batches(data: object, reason: str) -> None:
    with pytest.raises(BatchError) as info:
        parse_log_batch(data, source="s", now_ms=NOW_MS)
    assert str(info.value) == reason


# --- precheck ----------------------------------------------------------------------------


def _now(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def _batch_event(type: str, data: object, **kw: object) -> CloudEvent:
    return CloudEvent.create(type=type, source="/tool", data=data, **kw)  # type: ignore[arg-type]


def test_precheck_forwards_only_the_good_samples() -> None:
    samples: list[dict[str, object]] = [
        {"name": "a", "value": 1, "ts": _now()},
        {"name": "b", "value": "x"},
        {"name": "c", "value": 3, "labels": {"k": "v"}},
        {"name": "d", "value": 4, "ts": _now(3600)},
    ]
    data = {"samples": samples, "meta": {"agent": "x/1.0"}}
    event = _batch_event("io.opsline.metric.batch", data)
    checked = precheck(event)
    assert checked.event is not None
    assert checked.errors == [
        "samples[1].value: not a number (str)",
        "samples[3].ts: more than 10 minutes in the future",
    ]
    forwarded = checked.event.json()
    assert forwarded == {
        "samples": [samples[0], samples[2]],
        "meta": {"agent": "x/1.0"},
    }  # other keys are kept
    assert checked.event.id == event.id and checked.event.type == event.type


def test_precheck_leaves_a_fully_good_batch_byte_for_byte() -> None:
    raw = b'{"samples": [ {"name":"a","value":1} ]}'
    event = _batch_event("io.opsline.metric.batch", raw, datacontenttype="application/json")
    checked = precheck(event)
    assert checked.errors == []
    assert checked.event is event
    assert checked.event.data == raw


def test_precheck_refuses_a_batch_with_nothing_usable() -> None:
    checked = precheck(
        _batch_event("io.opsline.metric.batch", {"samples": [{"name": "a"}, {"value": 1}]})
    )
    assert checked.event is None
    assert checked.errors == ["samples[0].value: missing", "samples[1].name: missing"]

    empty = precheck(_batch_event("io.opsline.metric.batch", {"samples": []}))
    assert (empty.event, empty.errors) == (None, ["data.samples: empty"])

    no_list = precheck(_batch_event("io.opsline.metric.batch", {"points": []}))
    assert (no_list.event, no_list.errors) == (None, ["data.samples: missing, or not a list"])


def test_precheck_of_log_batches() -> None:
    data = {"records": [{"message": "ok"}, {"message": ""}, {"message": "fine", "level": "error"}]}
    checked = precheck(_batch_event("io.opsline.log.batch", data))
    assert checked.event is not None
    assert checked.errors == ["records[1].message: missing, or not a string"]
    assert checked.event.json() == {
        "records": [{"message": "ok"}, {"message": "fine", "level": "error"}]
    }

    none = precheck(_batch_event("io.opsline.log.batch", {"records": [{"level": "info"}]}))
    assert (none.event, none.errors) == (None, ["records[0].message: missing, or not a string"])
    empty = precheck(_batch_event("io.opsline.log.batch", {"records": []}))
    assert (empty.event, empty.errors) == (None, ["data.records: empty"])


def test_precheck_refuses_metric_batches_that_are_not_json() -> None:
    as_text = precheck(
        _batch_event("io.opsline.metric.batch", b"a 1", datacontenttype="text/plain")
    )
    assert as_text.event is None
    assert as_text.errors == ["io.opsline.metric.batch data must be JSON, not 'text/plain'"]

    broken = precheck(
        _batch_event(
            "io.opsline.metric.batch", b'{"samples": [', datacontenttype="application/json"
        )
    )
    assert broken.event is None
    assert len(broken.errors) == 1 and broken.errors[0].startswith("data is not valid JSON")


@pytest.mark.parametrize(
    "type_", ["io.opsline.metric.points", "io.opsline.whatever", "io.opsline.log.records"]
)
def test_precheck_refuses_unknown_reserved_types(type_: str) -> None:
    checked = precheck(_batch_event(type_, {"samples": []}))
    assert checked.event is None
    assert len(checked.errors) == 1
    assert checked.errors[0].startswith(
        f"unknown event type {type_!r}: the io.opsline.* namespace is reserved"
    )


@pytest.mark.parametrize(
    ("data", "ct"),
    [
        ({"anything": [1, 2]}, None),
        (b"\x00\xffbinary", "application/octet-stream"),
        (b"{not json", "application/json"),
        (None, None),
    ],
)
def test_precheck_passes_other_types_untouched(data: object, ct: str | None) -> None:
    event = _batch_event("com.github.push", data, datacontenttype=ct)
    before = (event.data, event.datacontenttype, event.attributes())
    checked = precheck(event)
    assert checked.event is event
    assert checked.errors == []
    assert (event.data, event.datacontenttype, event.attributes()) == before


def test_precheck_output_reparses_cleanly() -> None:
    data = {"samples": [{"name": "bad name", "value": 1}, {"name": "ok", "value": 2}]}
    checked = precheck(_batch_event("io.opsline.metric.batch", data))
    assert checked.event is not None
    again = parse_metric_batch(orjson.loads(checked.event.data))
    assert again.errors == [] and [s.name for s in again.samples] == ["ok"]
