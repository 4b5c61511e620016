"""Handlers: a batch of consumed records in, normalized events and index writes out."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from elasticsearch import AsyncElasticsearch
from google.protobuf.json_format import MessageToDict

from libs.events import topics as t
from libs.events.envelope import JSON, PROTOBUF, CloudEvent
from libs.events.worker import Batch, Record, TransientError
from libs.observability.metrics import get_metrics
from libs.schemas.opsline.v1.logs_pb2 import LogBatch
from libs.schemas.opsline.v1.metrics_pb2 import MetricBatch
from libs.telemetry.samples import encode_batch
from services.dataops_ingest import service, store, timeline

SOURCE = "opsline/dataops-ingest"


async def on_raw_events(batch: Batch, *, partitions: int) -> None:
    """ingest.raw → metrics.points (grouped by series partition), logs.records, ops.events."""
    metrics = get_metrics()
    for record in batch.records:
        event = record.event
        assert event is not None
        with batch.span(record, "normalize"):
            try:
                out = service.normalize(event)
            except service.Unusable as exc:
                metrics.samples.labels("rejected").inc()
                await batch.reject(record, f"rejected: {exc}")
                continue
            if out.stale:
                metrics.samples.labels("stale").inc(out.stale)
            if out.errors:
                metrics.samples.labels("rejected").inc(len(out.errors))
                await batch.reject(
                    record,
                    f"partially rejected ({len(out.errors)} items): " + "; ".join(out.errors[:50]),
                    partial=True,
                )
            if out.samples:
                metrics.samples.labels("accepted").inc(len(out.samples))
                groups: dict[int, list[Any]] = defaultdict(list)
                for sample in out.samples:
                    groups[sample.series.hash32 % partitions].append(sample)
                for part, samples in groups.items():
                    await batch.publish(
                        t.METRICS_POINTS,
                        CloudEvent.create(
                            type=t.METRIC_POINTS,
                            source=SOURCE,
                            subject=samples[0].name,
                            data=encode_batch(samples, source_event_id=event.id),
                            datacontenttype=PROTOBUF,
                            id=f"{event.id}:{part}",
                        ),
                        key=samples[0].series_id,
                        # every sample of a series lands on one partition, always
                        partition=part,
                    )
            if out.logs:
                await batch.publish(
                    t.LOGS_RECORDS,
                    CloudEvent.create(
                        type=t.LOG_RECORDS,
                        source=SOURCE,
                        subject=event.source,
                        data=service.log_batch_bytes(out.logs, source_event_id=event.id),
                        datacontenttype=PROTOBUF,
                        id=event.id,
                    ),
                    key=event.source,
                )
            if out.ops_event is not None:
                await batch.publish(
                    t.OPS_EVENTS,
                    CloudEvent.create(
                        type=t.OPS_EVENT,
                        source=SOURCE,
                        subject=event.subject or event.source,
                        data=MessageToDict(out.ops_event, preserving_proto_field_name=True),
                        datacontenttype=JSON,
                        id=event.id,
                    ),
                    key=event.subject or event.source,
                )


def to_documents(record: Record, *, prefix: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Index documents for one normalized record; ids make rewrites idempotent."""
    assert record.event is not None
    value = record.event.data
    if record.event.type == t.METRIC_POINTS:
        mb = MetricBatch()
        mb.ParseFromString(value)
        return [
            (
                store.index_for(prefix, "metrics", s.ts_ms),
                f"{s.series_id}:{s.ts_ms}",
                {
                    "series_id": s.series_id,
                    "name": s.name,
                    "labels": dict(s.labels),
                    "ts": s.ts_ms,
                    "value": s.value,
                },
            )
            for s in mb.samples
        ]
    if record.event.type == t.LOG_RECORDS:
        lb = LogBatch()
        lb.ParseFromString(value)
        docs = []
        for i, r in enumerate(lb.records):
            doc_id = hashlib.blake2b(f"{lb.source_event_id}:{i}".encode(), digest_size=12)
            docs.append(
                (
                    store.index_for(prefix, "logs", r.ts_ms),
                    doc_id.hexdigest(),
                    {
                        "ts": r.ts_ms,
                        "level": r.level,
                        "message": r.message,
                        "labels": dict(r.labels),
                        "source": r.source,
                    },
                )
            )
        return docs
    if record.event.type == t.OPS_EVENT:
        ev = record.event.json()
        ts = int(ev.get("ts_ms", 0))
        doc = {**ev, "ts": ts, **timeline.ops_fields(ev)}
        return [(store.index_for(prefix, "events", ts), str(ev["id"]), doc)]
    if record.topic in timeline.KIND_BY_TOPIC:
        return [timeline.control_plane_document(record, prefix=prefix)]
    raise ValueError(f"unexpected event type {record.event.type!r} on {record.topic}")


async def on_normalized(batch: Batch, *, es: AsyncElasticsearch, prefix: str) -> None:
    """metrics.points, logs.records, ops.events → one bulk request per consumed batch."""
    actions: list[tuple[str, str, dict[str, Any]]] = []
    owners: list[Record] = []
    for record in batch.records:
        with batch.span(record):
            try:
                docs = to_documents(record, prefix=prefix)
            except Exception as exc:  # a record we cannot read is dead-lettered, the rest go on
                await batch.reject(record, f"undecodable payload: {type(exc).__name__}: {exc}")
                continue
        actions.extend(docs)
        owners.extend([record] * len(docs))
    try:
        refused = await store.bulk_index(es, actions)
    except store.StoreUnavailable as exc:
        raise TransientError(f"elasticsearch unavailable: {exc}") from exc
    seen: set[int] = set()
    for pos, reason in refused:
        owner = owners[pos]
        if id(owner) not in seen:
            seen.add(id(owner))
            await batch.reject(owner, reason, partial=True)
