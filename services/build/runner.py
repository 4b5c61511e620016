"""The build runner: claims queued builds, runs their builders, heartbeats, reaps stuck ones.

The database is the queue. A claimed build is RUNNING under this worker's id and kept
alive by heartbeats; the reaper (any replica) re-queues a build whose worker went quiet,
and fails it once it has had max_attempts. In-process state is only the asyncio tasks of
the builds running here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from google.protobuf.json_format import ParseDict
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.schemas.opsline.v1 import build_pb2
from services.build import claims, packing, service
from services.build.artifacts import ArtifactStore
from services.build.builders import BuildContext, Builder, BuildError
from services.build.models import utcnow
from services.build.settings import BuildSettings

log = logging.getLogger(__name__)

REAP_INTERVAL_S = 5.0
POLL_S = 1.0
# Why a running build was interrupted, as its last step log says.
_STOPPED = {
    "cancel": "build cancelled",
    "timeout": "build timed out",
    "shutdown": "worker shutting down; the build will run again",
    "lost": "another worker took the build over",
}


@dataclass
class _Active:
    claimed: claims.Claimed
    abort: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    stop_reason: str | None = None
    finishing: bool = False


class Runner:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        settings: BuildSettings,
        store: ArtifactStore,
        builders: Mapping[str, Builder],
        on_commit: Callable[[], None] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.store = store
        self.builders = builders
        self.worker_id = settings.worker_name()
        self.on_commit = on_commit or (lambda: None)
        self.workdir = workdir
        self.active: dict[str, _Active] = {}
        self.running = False
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for queued builds now (a new one was committed, or a slot freed)."""
        self._wake.set()

    def interrupt(self, build_id: str, reason: str) -> bool:
        """Stop a build running here (cancel, timeout, shutdown, lost); kills its commands."""
        active = self.active.get(build_id)
        if active is None or active.finishing or active.stop_reason is not None:
            return False
        active.stop_reason = reason
        active.abort.set()
        if active.task is not None:
            active.task.cancel()
        return True

    # --- one round of each duty (the loop below; tests call them directly) ---------------

    async def claim_once(self) -> list[str]:
        free = self.settings.max_parallel - len(self.active)
        if free <= 0:
            return []
        async with service.writing(self.sessions) as session:
            claimed = await claims.claim(session, worker=self.worker_id, limit=free)
        if claimed:
            self.on_commit()
        for item in claimed:
            self._start(item)
        return [item.build_id for item in claimed]

    async def watch_once(self, *, heartbeat: bool = True) -> None:
        """Heartbeat the builds running here; stop those cancelled or taken over."""
        if not self.active:
            return
        async with service.writing(self.sessions) as session:
            owned = await claims.owned_by(session, worker=self.worker_id)
            if heartbeat:
                mine = [b for b in self.active if b in owned]
                await claims.heartbeat(session, worker=self.worker_id, build_ids=mine)
        for build_id, active in list(self.active.items()):
            entry = owned.get(build_id)
            if entry is None or entry[0] != active.claimed.attempt:
                if self.interrupt(build_id, "lost"):
                    log.warning("build %s: no longer ours (reaped or taken over)", build_id)
            elif entry[1]:
                self.interrupt(build_id, "cancel")

    async def reap_once(self, now: datetime | None = None) -> list[tuple[str, str]]:
        async with service.writing(self.sessions) as session:
            outcome = await claims.reap(
                session,
                now=now or utcnow(),
                heartbeat_timeout_s=self.settings.heartbeat_timeout_s,
                build_timeout_s=self.settings.build_timeout_s,
                max_attempts=self.settings.max_attempts,
                skip=frozenset(self.active),  # ours: heartbeated, and timed out by our timer
            )
        if outcome:
            self.on_commit()
            log.info("reaper: %s", ", ".join(f"{b} {what}" for b, what in outcome))
            self.wake()
        return outcome

    async def join(self) -> None:
        """Wait until no build is running here."""
        while self.active:
            tasks = [a.task for a in self.active.values() if a.task is not None]
            await asyncio.wait(tasks)

    # --- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        waker = asyncio.create_task(self._wake_on(stop))
        next_beat = next_reap = 0.0
        delay = POLL_S
        self.running = True
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    now = loop.time()
                    beat = now >= next_beat
                    await self.watch_once(heartbeat=beat)
                    if beat:
                        next_beat = now + self.settings.heartbeat_s
                    if now >= next_reap:
                        await self.reap_once()
                        next_reap = now + REAP_INTERVAL_S
                    await self.claim_once()
                    delay = POLL_S
                except Exception as exc:  # the database is away: keep the builds, retry
                    log.warning("build runner: %s (retrying in %.1fs)", exc, delay)
                    delay = min(delay * 2, 10.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(delay, self.settings.heartbeat_s))
        finally:
            self.running = False
            waker.cancel()
            await self.shutdown()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wake()

    async def shutdown(self, timeout: float = 8.0) -> None:
        """Hand the builds running here back to the queue (another replica, or our restart)."""
        for build_id in list(self.active):
            self.interrupt(build_id, "shutdown")
        tasks = [a.task for a in self.active.values() if a.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    # --- one build -------------------------------------------------------------------------

    def _start(self, claimed: claims.Claimed) -> None:
        active = _Active(claimed)
        self.active[claimed.build_id] = active
        elapsed = (utcnow() - claimed.started_at).total_seconds()
        remaining = max(self.settings.build_timeout_s - elapsed, 0.0)
        loop = asyncio.get_running_loop()
        active.timer = loop.call_later(remaining, self.interrupt, claimed.build_id, "timeout")
        active.task = asyncio.create_task(self._execute(active), name=f"build-{claimed.build_id}")
        active.task.add_done_callback(lambda task: self._done(active, task))
        log.info(
            "build %s of %s: started (attempt %d)", claimed.build_id, claimed.app, claimed.attempt
        )

    def _done(self, active: _Active, task: asyncio.Task[None]) -> None:
        if active.timer is not None:
            active.timer.cancel()
        self.active.pop(active.claimed.build_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "build %s: runner task failed", active.claimed.build_id, exc_info=task.exception()
            )
        self.wake()

    async def _execute(self, active: _Active) -> None:
        claimed = active.claimed
        workdir = Path(tempfile.mkdtemp(prefix="opsline-build-", dir=self.workdir))
        ctx = BuildContext(
            build_id=claimed.build_id,
            app=claimed.app,
            version=claimed.version,
            workdir=workdir,
            store=self.store,
            emit=lambda *step: self._emit_step(claimed, *step),
            abort=active.abort,
            interrupted=lambda: _STOPPED.get(active.stop_reason or ""),
        )
        artifacts: list[dict[str, Any]] = []
        component = ""
        try:
            try:
                request = ParseDict(orjson.loads(claimed.request), build_pb2.BuildRequested())
                for spec in request.components:
                    component = spec.name
                    builder = self.builders.get(spec.type)
                    if builder is None:
                        raise BuildError(
                            f"component {spec.name}: no builder for type {spec.type!r}"
                        )
                    artifacts.extend(await builder.build(spec, ctx))
                outcome, reason = "succeeded", ""
            except BuildError as exc:
                outcome, reason = "failed", exc.reason
            except (asyncio.CancelledError, packing.Aborted):
                if active.stop_reason is None:
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                outcome, reason = active.stop_reason, ""
            except Exception as exc:
                log.exception("build %s: component %s crashed", claimed.build_id, component)
                outcome = "failed"
                reason = f"component {component}: internal error: {type(exc).__name__}: {exc}"
            active.finishing = True
            await self._finish(claimed, outcome, reason, component, artifacts)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    async def _finish(
        self,
        claimed: claims.Claimed,
        outcome: str,
        reason: str,
        component: str,
        artifacts: list[dict[str, Any]],
    ) -> None:
        if outcome == "lost":
            return
        if outcome == "timeout":
            outcome, reason = "failed", f"build timed out after {self.settings.build_timeout_s:g} s"
        build_id, worker, attempt = claimed.build_id, self.worker_id, claimed.attempt
        delay = 0.5
        for retry in range(6):  # the database may blink; after that the reaper takes over
            try:
                async with service.writing(self.sessions) as session:
                    if outcome == "succeeded":
                        done = await claims.succeed(
                            session, claimed=claimed, worker=worker, artifacts=artifacts
                        )
                    elif outcome == "failed":
                        done = await claims.fail(
                            session,
                            build_id=build_id,
                            app=claimed.app,
                            worker=worker,
                            attempt=attempt,
                            reason=reason,
                            component=component,
                        )
                    elif outcome == "cancel":
                        done = await claims.cancel_running(
                            session,
                            build_id=build_id,
                            app=claimed.app,
                            worker=worker,
                            attempt=attempt,
                        )
                    else:  # shutdown
                        done = await claims.release(
                            session, build_id=build_id, worker=worker, attempt=attempt
                        )
                break
            except Exception as exc:
                if retry == 5:
                    raise
                log.warning("build %s: cannot record %s: %s", claimed.build_id, outcome, exc)
                await asyncio.sleep(delay)
                delay *= 2
        self.on_commit()
        log.info(
            "build %s: %s%s%s",
            claimed.build_id,
            outcome,
            f" ({reason})" if reason else "",
            "" if done else " — no longer ours, not recorded",
        )

    async def _emit_step(
        self, claimed: claims.Claimed, component: str, step: str, status: str, lines: list[str]
    ) -> None:
        message = build_pb2.BuildStep(
            build_id=claimed.build_id,
            app=claimed.app,
            component=component,
            step=step,
            status=status,
            log=lines,
        )
        try:
            async with service.writing(self.sessions) as session:
                await claims.emit_step(session, step=message)
        except SQLAlchemyError as exc:  # progress only: a database blip must not fail the build
            log.warning("build %s: step event not recorded: %s", claimed.build_id, exc)
            return
        self.on_commit()
