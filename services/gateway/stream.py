"""Live events for clients (Server-Sent Events), fed by the gateway's own consumer.

Every gateway replica tails the `*.events` topics in a consumer group of its own (a
broadcast, not a work queue) starting at the newest offsets, and fans each event out to
the streams its clients have open. A client that cannot keep up is disconnected rather
than allowed to grow the gateway's memory.

Each replica keeps a bounded ring of the most recent events, so a client that reconnects
with `Last-Event-ID` gets what it missed; if that id has left the ring (or was seen by
another replica only), the stream says so with a `missed` event and replays the whole
ring. Every event frame carries the CloudEvent id as its SSE id (the `missed` notice has
none, so a client that drops right after it still resumes from its last real event).

Each event is shown only to callers who may read its app: the `app` field of its data
(`labels.app`, or for ops events the original data's), or for deploy events naming only
an instance, that instance's app. Events of no app are for platform admins.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from libs.events import topics as t
from libs.events.envelope import CloudEvent, to_structured
from libs.events.worker import Batch

log = logging.getLogger(__name__)

STREAM_TOPICS = [t.APP_EVENTS, t.BUILD_EVENTS, t.DEPLOY_EVENTS, t.OPS_EVENTS, t.ALERT_EVENTS]
QUEUE_SIZE = 1000
HEARTBEAT_S = 15.0
_LAGGING = object()
Allowed = Callable[[CloudEvent], Awaitable[bool]]


def app_in(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    app = data.get("app")
    labels = data.get("labels")
    if not app and isinstance(labels, dict):
        app = labels.get("app")
    return app if isinstance(app, str) else ""


def app_of(event: CloudEvent) -> str:
    """The app an event concerns, from its data alone ("" if it names none)."""
    try:
        data = event.json() if event.data else None
    except ValueError:
        return ""
    app = app_in(data)
    if not app and event.type == "io.opsline.ops.event" and isinstance(data, dict):
        app = app_in(data.get("data"))  # the original event's data
    return app


def instance_of(event: CloudEvent) -> str:
    """The instance a deploy event names (drift reports name nothing else)."""
    if not event.type.startswith("io.opsline.deploy."):
        return ""
    try:
        data = event.json() if event.data else None
    except ValueError:
        return ""
    instance = data.get("instance") if isinstance(data, dict) else None
    return instance if isinstance(instance, str) else ""


@dataclass(eq=False)
class Subscription:
    types: tuple[str, ...]  # type prefixes; empty: every type
    subject: str | None
    queue: asyncio.Queue[object] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def wants(self, event: CloudEvent) -> bool:
        if self.subject is not None and event.subject != self.subject:
            return False
        return not self.types or event.type.startswith(self.types)


@dataclass
class Resume:
    """What a reconnecting client gets before the live events."""

    backlog: list[CloudEvent]
    missed: bool  # the Last-Event-ID was not in the ring: some events may be lost


class EventHub:
    def __init__(self, ring_size: int = 2000) -> None:
        self._subscriptions: set[Subscription] = set()
        self._ring: deque[CloudEvent] = deque(maxlen=max(1, ring_size))

    def subscribe(
        self, types: tuple[str, ...], subject: str | None, last_event_id: str | None = None
    ) -> tuple[Subscription, Resume]:
        """A live subscription, and the recent events after `last_event_id` (atomically:
        nothing is published between taking the backlog and subscribing)."""
        sub = Subscription(types, subject)
        resume = Resume([], False)
        if last_event_id:
            recent = list(self._ring)
            at = next(
                (i for i in range(len(recent) - 1, -1, -1) if recent[i].id == last_event_id), None
            )
            resume.missed = at is None
            resume.backlog = [
                e for e in recent[(at + 1 if at is not None else 0) :] if sub.wants(e)
            ]
        self._subscriptions.add(sub)
        return sub, resume

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    def publish(self, event: CloudEvent) -> None:
        self._ring.append(event)
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


def missed_frame(last_event_id: str) -> bytes:
    body = orjson.dumps(
        {
            "detail": "events after Last-Event-ID are no longer all held here; "
            "some were missed: replaying the oldest still held",
            "last_event_id": last_event_id,
        }
    )
    return b"event: missed\ndata: " + body + b"\n\n"


async def stream(
    hub: EventHub,
    sub: Subscription,
    *,
    allowed: Allowed,
    resume: Resume | None = None,
    last_event_id: str = "",
) -> AsyncIterator[bytes]:
    try:
        yield b": connected\n\n"
        if resume is not None:
            if resume.missed:
                yield missed_frame(last_event_id)
            for event in resume.backlog:
                if await allowed(event):
                    yield sse_frame(event)
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
            if await allowed(item):
                yield sse_frame(item)
    finally:
        hub.unsubscribe(sub)
