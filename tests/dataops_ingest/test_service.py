"""dataops-ingest normalization rules: metric and log batches, ops events, what is unusable."""

from __future__ import annotations

import base64
import time

import orjson
import pytest
from google.protobuf.json_format import MessageToDict

from libs.events.envelope import CloudEvent
from libs.schemas.opsline.v1.logs_pb2 import LogBatch
from libs.telemetry.samples import series_id
from services.dataops_ingest.service import (
    Unusable,
    log_batch_bytes,
    normalize,
    to_ops_event,
)

NOW_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z


def _event(type: str, data: object = None, **kw: object) -> CloudEvent:
    return CloudEvent.create(
        type=type,
        source="/tools/agent",
        data=data,  # type: ignore[arg-type]
        id=kw.pop("id", "ev-1"),
        **kw,
    )  # type: ignore[arg-type]


# --- metric batches ----------------------------------------------------------------------


def test_metric_batch_gives_samples_and_the_reasons_for_the_rest() -> None:
    event = _event(
        "io.opsline.metric.batch",
        {
            "samples": [
                {"name": "cpu", "labels": {"host": "a"}, "value": 0.5, "ts": NOW_MS - 10},
                {"name": "cpu", "value": "high"},
                {"name": "mem_bytes", "value": 1024},
                {"name": "bad name", "value": 1},
            ]
        },
    )
    out = normalize(event, now_ms=NOW_MS)
    assert [(s.name, dict(s.labels), s.value, s.ts_ms) for s in out.samples] == [
        ("cpu", {"host": "a"}, 0.5, NOW_MS - 10),
        ("mem_bytes", {}, 1024.0, NOW_MS),  # no ts: now
    ]
    assert out.samples[0].series_id == series_id("cpu", {"host": "a"})
    assert out.errors == [
        "samples[1].value: not a number (str)",
        "samples[3].name: 'bad name' is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
    ]
    assert out.logs == [] and out.ops_event is None


def test_metric_batch_with_only_bad_samples_is_unusable() -> None:
    event = _event("io.opsline.metric.batch", {"samples": [{"name": "m"}, {"value": 1}]})
    with pytest.raises(Unusable) as info:
        normalize(event, now_ms=NOW_MS)
    assert str(info.value) == "no valid sample: samples[0].value: missing; samples[1].name: missing"


def test_empty_metric_batch_is_unusable() -> None:
    with pytest.raises(Unusable, match=r"^no valid sample: $"):
        normalize(_event("io.opsline.metric.batch", {"samples": []}), now_ms=NOW_MS)


def test_the_unusable_reason_lists_at_most_20_errors() -> None:
    event = _event("io.opsline.metric.batch", {"samples": [{"name": "m"}] * 30})
    with pytest.raises(Unusable) as info:
        normalize(event, now_ms=NOW_MS)
    assert str(info.value).count("value: missing") == 20
    assert "samples[19]" in str(info.value) and "samples[20]" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"points": []}, "data.samples: missing, or not a list"),
        ([1, 2], "data must be a JSON object with a 'samples' list"),
    ],
)
def test_metric_batch_without_a_sample_list_is_unusable(data: object, reason: str) -> None:
    with pytest.raises(Unusable) as info:
        normalize(_event("io.opsline.metric.batch", data), now_ms=NOW_MS)
    assert str(info.value) == reason


def test_metric_batch_that_is_not_json_is_unusable() -> None:
    with pytest.raises(Unusable) as info:
        normalize(_event("io.opsline.metric.batch", b"cpu 1", datacontenttype="text/plain"))
    assert str(info.value) == "io.opsline.metric.batch data must be JSON, not 'text/plain'"
    with pytest.raises(Unusable, match="data is not valid JSON"):
        normalize(
            _event("io.opsline.metric.batch", b'{"samples": [', datacontenttype="application/json")
        )


def test_metric_batch_samples_are_not_dated_by_the_event_time() -> None:
    event = _event(
        "io.opsline.metric.batch",
        {"samples": [{"name": "m", "value": 1}]},
        time="2020-01-01T00:00:00Z",
    )
    [sample] = normalize(event, now_ms=NOW_MS).samples
    assert sample.ts_ms == NOW_MS


# --- log batches -------------------------------------------------------------------------


def test_log_batch_gives_records_with_the_event_source() -> None:
    event = _event(
        "io.opsline.log.batch",
        {
            "records": [
                {
                    "message": "deploy started",
                    "level": "INFO",
                    "labels": {"app": "shop"},
                    "ts": NOW_MS - 5,
                },
                {"message": ""},
                {"message": "oom", "level": "fatal"},
            ]
        },
    )
    out = normalize(event, now_ms=NOW_MS)
    assert [(r.message, r.level, dict(r.labels), r.ts_ms, r.source) for r in out.logs] == [
        ("deploy started", "info", {"app": "shop"}, NOW_MS - 5, "/tools/agent"),
        ("oom", "fatal", {}, NOW_MS, "/tools/agent"),
    ]
    assert out.errors == ["records[1].message: missing, or not a string"]
    assert out.samples == [] and out.ops_event is None


def test_log_batch_with_nothing_usable_is_unusable() -> None:
    with pytest.raises(Unusable) as info:
        normalize(_event("io.opsline.log.batch", {"records": [{"level": "info"}]}), now_ms=NOW_MS)
    assert str(info.value) == "no valid log record: records[0].message: missing, or not a string"
    with pytest.raises(Unusable) as info:
        normalize(_event("io.opsline.log.batch", {"lines": []}), now_ms=NOW_MS)
    assert str(info.value) == "data.records: missing, or not a list"
    with pytest.raises(Unusable, match="must be JSON, not 'text/plain'"):
        normalize(_event("io.opsline.log.batch", b"a line", datacontenttype="text/plain"))


def test_log_batch_bytes_round_trip() -> None:
    out = normalize(
        _event("io.opsline.log.batch", {"records": [{"message": "a"}, {"message": "b"}]}),
        now_ms=NOW_MS,
    )
    batch = LogBatch()
    batch.ParseFromString(log_batch_bytes(out.logs, source_event_id="ev-1"))
    assert batch.source_event_id == "ev-1"
    assert [r.message for r in batch.records] == ["a", "b"]
    assert list(batch.records) == out.logs


# --- reserved and other types ----------------------------------------------------------


@pytest.mark.parametrize(
    "type_",
    [
        "io.opsline.metric.points",
        "io.opsline.log.records",
        "io.opsline.ops.event",
        "io.opsline.something",
    ],
)
def test_unknown_reserved_types_are_unusable(type_: str) -> None:
    with pytest.raises(Unusable) as info:
        normalize(_event(type_, {"samples": [{"name": "m", "value": 1}]}), now_ms=NOW_MS)
    assert str(info.value).startswith(
        f"unknown event type {type_!r}: the io.opsline.* namespace is reserved"
    )


def test_other_types_become_ops_events_with_json_data_as_a_struct() -> None:
    data = {
        "repo": "shop",
        "commits": 3,
        "tags": ["v1", "latest"],
        "ok": True,
        "nested": {"by": None},
    }
    event = _event(
        "com.github.push", data, subject="refs/heads/main", time="2024-05-01T09:00:00.250Z"
    )
    out = normalize(event, now_ms=NOW_MS)
    assert out.samples == [] and out.logs == [] and out.errors == []
    ops = out.ops_event
    assert ops is not None
    assert (ops.id, ops.source, ops.type, ops.subject) == (
        "ev-1",
        "/tools/agent",
        "com.github.push",
        "refs/heads/main",
    )
    assert ops.data_content_type == "application/json"
    assert ops.ts_ms == NOW_MS - 3_600_000 + 250  # the event's own time
    assert ops.HasField("data")
    assert MessageToDict(ops.data) == data
    assert ops.data_text == ""


def test_ops_event_time_with_an_offset() -> None:
    event = _event("x.y", {"a": 1}, time="2024-05-01T12:00:00+02:00")
    assert normalize(event, now_ms=0).ops_event.ts_ms == NOW_MS  # type: ignore[union-attr]


def test_ops_event_without_time_is_dated_now() -> None:
    event = CloudEvent(id="e", source="/s", type="x.y", data=b'{"a":1}')
    assert event.time is None
    assert to_ops_event(event, now_ms=NOW_MS).ts_ms == NOW_MS
    before = int(time.time() * 1000)
    ts = to_ops_event(event).ts_ms
    assert before <= ts <= int(time.time() * 1000)


def test_ops_event_json_that_is_not_an_object_goes_to_data_text() -> None:
    ops = normalize(_event("x.y", [1, "two", None]), now_ms=NOW_MS).ops_event
    assert ops is not None
    assert not ops.HasField("data")
    assert orjson.loads(ops.data_text) == [1, "two", None]
    scalar = normalize(
        _event("x.y", b"42", datacontenttype="application/json"), now_ms=NOW_MS
    ).ops_event
    assert scalar is not None and scalar.data_text == "42"


def test_ops_event_text_data_goes_to_data_text() -> None:
    ops = normalize(
        _event("x.y", "déployé v2\n".encode(), datacontenttype="text/plain"), now_ms=NOW_MS
    ).ops_event
    assert ops is not None
    assert ops.data_text == "déployé v2\n"
    assert ops.data_content_type == "text/plain"
    assert not ops.HasField("data")


def test_ops_event_binary_data_goes_to_data_text_as_base64() -> None:
    raw = b"\x00\x9f\xff\xfe binary"
    ops = normalize(
        _event("x.y", raw, datacontenttype="application/octet-stream"), now_ms=NOW_MS
    ).ops_event
    assert ops is not None
    assert ops.data_text == base64.b64encode(raw).decode()
    assert base64.b64decode(ops.data_text) == raw


def test_ops_event_without_data() -> None:
    ops = normalize(
        CloudEvent(id="e", source="/s", type="x.y", time="2024-05-01T10:00:00Z"), now_ms=0
    ).ops_event
    assert ops is not None
    assert ops.ts_ms == NOW_MS
    assert not ops.HasField("data") and ops.data_text == ""
    assert ops.subject == "" and ops.data_content_type == ""


def test_ops_event_declared_json_that_does_not_parse_is_unusable() -> None:
    with pytest.raises(Unusable) as info:
        normalize(_event("x.y", b"{broken", datacontenttype="application/json"), now_ms=NOW_MS)
    assert str(info.value) == "data is declared JSON but does not parse"


def test_ops_event_survives_protobuf_json_mapping() -> None:
    ops = normalize(_event("x.y", {"k": "v"}, subject="s"), now_ms=NOW_MS).ops_event
    assert ops is not None
    as_json = MessageToDict(ops)
    assert as_json["data"] == {"k": "v"}
    assert as_json["id"] == "ev-1" and as_json["subject"] == "s"
