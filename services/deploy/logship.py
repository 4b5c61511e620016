"""The local runtime's process output, shipped as `io.opsline.log.batch` events.

Each line a process prints (and each note of the runtime's own, such as a restart) goes
onto `ingest.raw` like any tool's logs, so dataops-ingest indexes it and log search and
an app's timeline see it. Lines wait in a bounded buffer: when Kafka is away longer than
the buffer lasts, the oldest lines are dropped and counted (they are still in the
component's logs/current.log and in `GET /v1/instances/{id}/logs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from libs.events import topics as t
from libs.events.envelope import CloudEvent
from libs.events.publisher import Publisher

log = logging.getLogger(__name__)

SOURCE = "opsline/deploy"
NOTE = "[opsline] "


class LogShipper:
    def __init__(self, *, max_lines: int = 20_000, batch_lines: int = 1000) -> None:
        self._lines: deque[tuple[int, str, str, str]] = deque()
        self.max_lines = max_lines
        self.batch_lines = batch_lines
        self.dropped = 0
        self._ready = asyncio.Event()

    def add(self, instance: str, component: str, line: str) -> None:
        """Called by the runtime for every line; never blocks, never raises."""
        if not line.strip():
            return
        if len(self._lines) >= self.max_lines:
            self._lines.popleft()
            self.dropped += 1
        self._lines.append((int(time.time() * 1000), instance, component, line))
        self._ready.set()

    def _take(self) -> dict[str, list[dict]]:
        """Up to batch_lines lines, grouped by instance (one event each, keyed by it)."""
        out: dict[str, list[dict]] = {}
        for _ in range(min(self.batch_lines, len(self._lines))):
            ts, instance, component, line = self._lines.popleft()
            note = line.startswith(NOTE)
            out.setdefault(instance, []).append(
                {
                    "ts": ts,
                    "level": "notice" if note else "info",
                    "message": line,
                    "labels": {
                        "instance": instance,
                        "component": component,
                        "stream": "opsline" if note else "output",
                    },
                }
            )
        return out

    async def run(self, publisher: Publisher, stop: asyncio.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), interval)
            self._ready.clear()
            while self._lines:
                if not await self._ship(publisher, self._take()):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), interval)
                    break
            if self.dropped:
                log.warning("log shipping: dropped %d lines (buffer full)", self.dropped)
                self.dropped = 0

    async def _ship(self, publisher: Publisher, batch: dict[str, list[dict]]) -> bool:
        """Publish one event per instance; on failure put back what was not sent."""
        pending = list(batch.items())
        while pending:
            instance, records = pending[0]
            event = CloudEvent.create(
                type=t.LOG_BATCH, source=SOURCE, subject=instance, data={"records": records}
            )
            try:
                await publisher.publish(t.INGEST_RAW, event, key=instance)
            except Exception as exc:  # Kafka away: keep the lines (bounded), try again
                log.warning("log shipping paused: %s", exc)
                for name, kept in reversed(pending):
                    for record in reversed(kept):
                        self._lines.appendleft(
                            (record["ts"], name, record["labels"]["component"], record["message"])
                        )
                return False
            pending.pop(0)
        return True
