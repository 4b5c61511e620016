"""Normalization of what external tools publish: no Kafka or HTTP here, just the rules."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

import orjson
from google.protobuf.json_format import ParseDict

from libs.events import topics as t
from libs.events.envelope import CloudEvent, EnvelopeError, parse_rfc3339
from libs.schemas.opsline.v1.logs_pb2 import LogBatch, LogRecord
from libs.schemas.opsline.v1.ops_pb2 import OpsEvent
from libs.telemetry import remote_write
from libs.telemetry.logs import parse_log_batch
from libs.telemetry.samples import BatchError, NormSample, parse_metric_batch


class Unusable(ValueError):
    """Nothing in the event can be taken; the text says why."""


@dataclass(slots=True)
class Normalized:
    samples: list[NormSample] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    ops_event: OpsEvent | None = None
    errors: list[str] = field(default_factory=list)  # parts that were not taken
    stale: int = 0  # Prometheus staleness markers: dropped, not errors


def normalize(event: CloudEvent, *, now_ms: int | None = None) -> Normalized:
    """Turn one ingest.raw event into samples, log records or an ops event."""
    if event.type == t.METRIC_BATCH:
        try:
            parsed = parse_metric_batch(_json_data(event), now_ms=now_ms)
        except BatchError as exc:
            raise Unusable(str(exc)) from None
        if not parsed.samples:
            raise Unusable("no valid sample: " + "; ".join(parsed.errors[:20]))
        return Normalized(samples=parsed.samples, errors=parsed.errors)
    if event.type == remote_write.EVENT_TYPE:
        return _remote_write(event, now_ms=now_ms)
    if event.type == t.LOG_BATCH:
        try:
            logs, errors, _ = parse_log_batch(_json_data(event), source=event.source, now_ms=now_ms)
        except BatchError as exc:
            raise Unusable(str(exc)) from None
        if not logs:
            raise Unusable("no valid log record: " + "; ".join(errors[:20]))
        return Normalized(logs=logs, errors=errors)
    if event.type.startswith(t.RESERVED_PREFIX):
        raise Unusable(
            f"unknown event type {event.type!r}: the io.opsline.* namespace is reserved "
            f"(external tools send {t.METRIC_BATCH}, {t.LOG_BATCH} or their own types)"
        )
    return Normalized(ops_event=to_ops_event(event, now_ms=now_ms))


def _remote_write(event: CloudEvent, *, now_ms: int | None) -> Normalized:
    """A Prometheus remote_write body (as the gateway got it) → samples; the rules above."""
    try:
        parsed = remote_write.parse_event_data(
            event.data, encoding=event.extensions.get("contentencoding"), now_ms=now_ms
        )
    except remote_write.RemoteWriteError as exc:
        raise Unusable(exc.reason) from None
    if not parsed.samples and parsed.errors:
        raise Unusable("no valid sample: " + "; ".join(parsed.errors[:20]))
    return Normalized(samples=parsed.samples, errors=parsed.errors, stale=parsed.stale)


def _json_data(event: CloudEvent) -> object:
    if not event.is_json():
        raise Unusable(f"{event.type} data must be JSON, not {event.datacontenttype!r}")
    try:
        return event.json()
    except EnvelopeError as exc:
        raise Unusable(str(exc)) from None


def to_ops_event(event: CloudEvent, *, now_ms: int | None = None) -> OpsEvent:
    ts = now_ms if now_ms is not None else int(time.time() * 1000)
    if event.time:
        ts = int(parse_rfc3339(event.time).timestamp() * 1000)
    out = OpsEvent(
        id=event.id,
        source=event.source,
        type=event.type,
        subject=event.subject or "",
        ts_ms=ts,
        data_content_type=event.datacontenttype or "",
    )
    if event.data:
        if event.is_json():
            try:
                value = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise Unusable("data is declared JSON but does not parse") from None
            if isinstance(value, dict):
                ParseDict(value, out.data)
            else:
                out.data_text = orjson.dumps(value).decode()
        else:
            try:
                out.data_text = event.data.decode("utf-8")
            except UnicodeDecodeError:
                out.data_text = base64.b64encode(event.data).decode()
    return out


def log_batch_bytes(records: list[LogRecord], *, source_event_id: str) -> bytes:
    return LogBatch(records=records, source_event_id=source_event_id).SerializeToString()
