"""A Kafka consumer loop with at-least-once delivery, dead-lettering and back-pressure.

The handler gets a `Batch` of decoded records. It publishes through the batch, and
rejects bad records through it; the worker commits offsets only after every publish and
dead-letter of the batch is acknowledged by the broker. `TransientError` (a store or
broker that is down) makes the worker wait and retry the same records without
committing; any other exception is retried, then the failing record alone is
dead-lettered, so one poison message never stops a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry import trace

from libs.events import topics as t
from libs.events.deadletter import deadletter_headers
from libs.events.envelope import CloudEvent, EnvelopeError, Headers, from_kafka
from libs.events.publisher import Publisher
from libs.observability.metrics import get_metrics
from libs.observability.tracing import context_from_kafka, tracer

log = logging.getLogger(__name__)


class TransientError(Exception):
    """Infrastructure trouble (a store is down): retry later, commit nothing."""


@dataclass(slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: int
    event: CloudEvent | None = None

    @property
    def type(self) -> str:
        return self.event.type if self.event else "?"


@dataclass
class Batch:
    worker: Worker
    records: list[Record]
    _pending: list[asyncio.Future[Any]] = field(default_factory=list)
    rejected: int = 0

    async def publish(
        self,
        topic: str,
        event: CloudEvent,
        *,
        key: str | bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        self._pending.append(
            await self.worker.publisher.send(
                topic, event, key=key, headers=headers, partition=partition
            )
        )

    async def reject(self, record: Record, reason: str, *, partial: bool = False) -> None:
        """Send the record, untouched, to `deadletter` with the reason in a header."""
        self.rejected += 1
        self._pending.append(await self.worker.deadletter(record, reason, partial=partial))

    @contextlib.contextmanager
    def span(self, record: Record, name: str | None = None) -> Iterator[trace.Span]:
        """A consumer span that continues the trace the record's producer started."""
        ctx = context_from_kafka(record.headers)
        with tracer().start_as_current_span(
            name or f"consume {record.topic}",
            context=ctx,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.kafka.offset": record.offset,
                "cloudevents.event_type": record.type,
                "cloudevents.event_id": record.event.id if record.event else "",
            },
        ) as span:
            yield span

    async def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            await asyncio.gather(*pending)


Handler = Callable[[Batch], Awaitable[None]]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("%s: partitions revoked: %s", self.worker.name, _fmt(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("%s: partitions assigned: %s", self.worker.name, _fmt(assigned))
        self.worker.joined.set()


def _fmt(tps: Any) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)) or "none"


class Worker:
    """One consumer group member: topics in, handler, offsets committed after the work."""

    def __init__(
        self,
        *,
        name: str,
        service: str,
        bootstrap: str,
        group_id: str,
        topics: list[str],
        handler: Handler,
        publisher: Publisher,
        decode: bool = True,
        max_records: int = 500,
        max_attempts: int = 3,
        start_at: str = "earliest",
    ) -> None:
        self.name = name
        self.service = service
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = topics
        self.handler = handler
        self.publisher = publisher
        self.decode = decode
        self.max_records = max_records
        self.max_attempts = max_attempts
        self.start_at = start_at  # where a new group starts: earliest, or latest for live tails
        self.joined = asyncio.Event()
        self.processed = 0
        self._metrics = get_metrics()
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def ready(self) -> bool:
        return self.joined.is_set()

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member owns right now (empty while not joined)."""
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    async def deadletter(self, record: Record, reason: str, *, partial: bool = False) -> Any:
        self._metrics.failed.labels(record.topic, record.type, _reason_kind(reason)).inc()
        log.warning(
            "%s: dead-lettering %s[%d]@%d: %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
        headers = deadletter_headers(
            record.headers,
            reason=reason,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            service=self.service,
            partial=partial,
        )
        return await self.publisher.send_raw(
            t.DEADLETTER, record.value, key=record.key, headers=headers
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; reconnects on broker trouble."""
        delay = 0.5
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group_id,
                client_id=f"{self.service}-{self.name}",
                enable_auto_commit=False,
                auto_offset_reset=self.start_at,
                max_partition_fetch_bytes=8 << 20,
                fetch_max_bytes=32 << 20,
                session_timeout_ms=30000,
                heartbeat_interval_ms=3000,
            )
            try:
                await consumer.start()
                consumer.subscribe(self.topics, listener=_Rebalance(self))
                self._consumer = consumer
                delay = 0.5
                await self._loop(consumer, stop)
            except (KafkaError, OSError) as exc:
                self._metrics.restarts.labels(self.name).inc()
                log.warning("%s: Kafka trouble: %s (reconnecting in %.1fs)", self.name, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 10.0)
            finally:
                self.joined.clear()
                self._consumer = None
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _loop(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        while not stop.is_set():
            data = await consumer.getmany(timeout_ms=300, max_records=self.max_records)
            if not data:
                continue
            records = [
                Record(
                    m.topic,
                    m.partition,
                    m.offset,
                    m.key,
                    m.value,
                    list(m.headers or ()),
                    m.timestamp,
                )
                for msgs in data.values()
                for m in msgs
            ]
            done = await self._process(records, stop)
            if not done:  # stopping mid-retry: leave the offsets for the next owner
                return
            offsets = {tp: msgs[-1].offset + 1 for tp, msgs in data.items()}
            await consumer.commit(offsets)
            self.processed += len(records)
            for tp, msgs in data.items():
                hw = consumer.highwater(tp)
                if hw is not None:
                    self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                        max(hw - msgs[-1].offset - 1, 0)
                    )

    async def _process(self, records: list[Record], stop: asyncio.Event) -> bool:
        good: list[Record] = []
        undecodable = Batch(self, [])
        for record in records:
            if self.decode:
                try:
                    record.event = from_kafka(record.value, record.headers)
                except EnvelopeError as exc:
                    await undecodable.reject(record, f"invalid CloudEvent: {exc}")
                    continue
            self._metrics.consumed.labels(record.topic, record.type).inc()
            good.append(record)
        await undecodable.flush()
        if not good:
            return True
        return await self._handle(good, stop)

    async def _handle(self, records: list[Record], stop: asyncio.Event) -> bool:
        attempt = 0
        delay = 0.2
        while True:
            batch = Batch(self, records)
            started = time.perf_counter()
            try:
                await self.handler(batch)
                await batch.flush()
                self._metrics.handler_seconds.labels(records[0].topic).observe(
                    time.perf_counter() - started
                )
                return True
            except (TransientError, KafkaError) as exc:
                log.warning("%s: transient failure, retrying in %.1fs: %s", self.name, delay, exc)
                with contextlib.suppress(Exception):
                    await batch.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                with contextlib.suppress(Exception):
                    await batch.flush()
                if attempt >= self.max_attempts:
                    if len(records) == 1:
                        failed = Batch(self, [])
                        await failed.reject(
                            records[0], f"handler failed: {type(exc).__name__}: {exc}"
                        )
                        await failed.flush()
                        log.exception("%s: handler failed; record dead-lettered", self.name)
                        return True
                    # Find the poison record: handle the batch one record at a time.
                    for record in records:
                        if not await self._handle([record], stop):
                            return False
                    return True
                log.warning("%s: handler error (attempt %d): %r", self.name, attempt, exc)
            if stop.is_set():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
            if stop.is_set():
                return False


def _reason_kind(reason: str) -> str:
    """A low-cardinality label for a reason text (the part before the first colon)."""
    return reason.split(":", 1)[0][:40]
