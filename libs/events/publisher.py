"""Typed publishing of CloudEvents onto Kafka, with trace context and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from libs.events.envelope import CloudEvent, Headers, to_kafka
from libs.events.topics import ALL_TOPICS, guard_topics, wait_for_topics
from libs.observability.metrics import get_metrics
from libs.observability.tracing import kafka_headers_for_current_span

log = logging.getLogger(__name__)


class Publisher:
    """Publishes CloudEvents (binary content mode); acks=all so an awaited send is durable."""

    def __init__(self, bootstrap: str, *, client_id: str, linger_ms: int = 5) -> None:
        self._options = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "linger_ms": linger_ms,
            "max_batch_size": 1 << 20,
            "max_request_size": 16 << 20,
        }
        self._producer: AIOKafkaProducer | None = None
        self._metrics = get_metrics()
        self.started = False

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("publisher not started")
        return self._producer

    async def start(self) -> None:
        """Connect (the producer must be made inside the running loop)."""
        producer = AIOKafkaProducer(**self._options)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        self.started = True

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
            self.started = False

    async def send(
        self,
        topic: str,
        event: CloudEvent,
        *,
        key: str | bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        """Queue an event; the returned future resolves once the broker has it. `partition`
        overrides the key's partition (the key still travels with the record)."""
        ev_key, value, ev_headers = to_kafka(event, extra=kafka_headers_for_current_span())
        if headers:
            ev_headers.extend(headers)
        if isinstance(key, str):
            key = key.encode()
        future = await self.producer.send(
            topic, value, key=key or ev_key, headers=ev_headers, partition=partition
        )
        self._metrics.produced.labels(topic, event.type).inc()
        return future

    async def publish(
        self, topic: str, event: CloudEvent, *, key: str | bytes | None = None
    ) -> Any:
        """Publish one event and wait until the broker has it."""
        return await (await self.send(topic, event, key=key))

    async def send_raw(
        self, topic: str, value: bytes | None, *, key: bytes | None, headers: Headers
    ) -> asyncio.Future[Any]:
        """Queue a record as it is (dead-lettering keeps the original bytes untouched)."""
        return await self.producer.send(topic, value, key=key, headers=headers)

    async def partitions_for(self, topic: str) -> set[int]:
        return await self.producer.partitions_for(topic)


async def connect_backbone(
    publisher: Publisher, *, bootstrap: str, partitions: int, stop: asyncio.Event
) -> bool:
    """Create the topics and start the publisher, retrying until the broker answers.

    Services start in any order, so the broker may not be there yet. Returns False if
    asked to stop first.
    """
    await wait_for_topics(bootstrap, ALL_TOPICS, partitions=partitions, stop=stop)
    delay = 0.5
    while not stop.is_set():
        try:
            await publisher.start()
            return True
        except (KafkaError, OSError) as exc:
            log.warning("waiting for Kafka at %s: %s (retry in %.1fs)", bootstrap, exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
    return False


def topic_guard(bootstrap: str, partitions: int) -> Callable[[asyncio.Event], Awaitable[None]]:
    """A task factory that re-creates vanished topics (see topics.guard_topics)."""
    return functools.partial(guard_topics, bootstrap, ALL_TOPICS, partitions=partitions)
