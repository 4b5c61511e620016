"""Early validation of inbound events (the gateway answers with reasons before Kafka)."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from libs.events import topics as t
from libs.events.envelope import CloudEvent, EnvelopeError
from libs.telemetry.logs import parse_log_batch
from libs.telemetry.samples import BatchError, parse_metric_batch


@dataclass(slots=True)
class Checked:
    event: CloudEvent | None  # what to forward (bad items removed), None if nothing is usable
    errors: list[str] = field(default_factory=list)


def precheck(event: CloudEvent) -> Checked:
    """Validate the data of a metric or log batch; other types pass as ops events."""
    if event.type not in (t.METRIC_BATCH, t.LOG_BATCH):
        if event.type.startswith(t.RESERVED_PREFIX):
            return Checked(
                None,
                [
                    f"unknown event type {event.type!r}: the io.opsline.* namespace is reserved; "
                    f"send {t.METRIC_BATCH}, {t.LOG_BATCH} or a type of your own"
                ],
            )
        return Checked(event)
    if not event.is_json():
        return Checked(None, [f"{event.type} data must be JSON, not {event.datacontenttype!r}"])
    try:
        data = event.json()
    except EnvelopeError as exc:
        return Checked(None, [str(exc)])
    try:
        if event.type == t.METRIC_BATCH:
            parsed = parse_metric_batch(data)
            errors, kept, key = parsed.errors, parsed.kept, "samples"
        else:
            _, errors, kept = parse_log_batch(data, source=event.source)
            key = "records"
    except BatchError as exc:
        return Checked(None, [str(exc)])
    if not kept:
        return Checked(None, errors or [f"data.{key}: empty"])
    if errors:
        items = data[key]
        event.data = orjson.dumps({**data, key: [items[i] for i in kept]})
    return Checked(event, errors)
