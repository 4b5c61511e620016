"""Live events for clients (Server-Sent Events), fed by the gateway's own consumer.

Every gateway replica tails the `*.events` topics in a consumer group of its own (a
broadcast, not a work queue) starting at the newest offsets, and fans each event out to
the streams its clients have open. A client that cannot keep up is disconnected rather
than allowed to grow the gateway's memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson

from libs.events import topics as t
from libs.events.envelope import CloudEvent, to_structured
from libs.events.worker import Batch

log = logging.getLogger(__name__)

STREAM_TOPICS = [t.APP_EVENTS, t.BUILD_EVENTS, t.DEPLOY_EVENTS, t.OPS_EVENTS, t.ALERT_EVENTS]
QUEUE_SIZE = 1000
HEARTBEAT_S = 15.0
_LAGGING = object()


@dataclass(eq=False)
class Subscription:
    types: tuple[str, ...]  # type prefixes; empty: every type
    subject: str | None
    queue: asyncio.Queue[object] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def wants(self, event: CloudEvent) -> bool:
        if self.subject is not None and event.subject != self.subject:
            return False
        return not self.types or event.type.startswith(self.types)


class EventHub:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def subscribe(self, types: tuple[str, ...], subject: str | None) -> Subscription:
        sub = Subscription(types, subject)
        self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    def publish(self, event: CloudEvent) -> None:
        for sub in list(self._subscriptions):
            if not sub.wants(event):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._subscriptions.discard(sub)
                sub.queue.get_nowait()
                sub.queue.put_nowait(_LAGGING)

    async def on_events(self, batch: Batch) -> None:
        """Worker handler: fan each consumed event out to the open streams."""
        for record in batch.records:
            if record.event is not None:
                self.publish(record.event)


def sse_frame(event: CloudEvent) -> bytes:
    body = orjson.dumps(to_structured(event))
    return (
        b"id: "
        + event.id.encode()
        + b"\nevent: "
        + event.type.encode()
        + b"\ndata: "
        + body
        + b"\n\n"
    )


async def stream(hub: EventHub, sub: Subscription) -> AsyncIterator[bytes]:
    try:
        yield b": connected\n\n"
        while True:
            try:
                item = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if item is _LAGGING:
                yield b'event: error\ndata: {"detail": "client too slow; reconnect"}\n\n'
                return
            assert isinstance(item, CloudEvent)
            yield sse_frame(item)
    finally:
        hub.unsubscribe(sub)
