"""A claimed build's life on a worker: claim, heartbeat, finish or hand back, and the reaper.

Changes to a claimed task are compare-and-set (status, worker and attempt must still match),
so two replicas, or a worker and the reaper, never both finish one build.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.schemas.opsline.v1 import build_pb2
from services.build.models import BuildStatus, BuildTask, as_utc, utcnow
from services.build.service import MAX_REASON, emit, rowcount

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class Claimed:
    """A task this worker now runs (ids only: no ORM object crosses into the runner)."""

    build_id: str
    app: str
    version: str
    attempt: int
    started_at: datetime
    request: str


async def claim(
    session: AsyncSession, *, worker: str, limit: int, now: datetime | None = None
) -> list[Claimed]:
    """Take up to `limit` QUEUED tasks, oldest first, and announce that they started."""
    if limit <= 0:
        return []
    now = now or utcnow()
    query = (
        select(BuildTask)
        .where(BuildTask.status == BuildStatus.QUEUED)
        .order_by(col(BuildTask.created_at), col(BuildTask.build_id))
        .limit(limit)
    )
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for task in (await session.exec(query)).all():
        taken = await session.exec(
            update(BuildTask)
            .where(
                col(BuildTask.build_id) == task.build_id,
                col(BuildTask.status) == BuildStatus.QUEUED,
            )
            .values(
                status=BuildStatus.RUNNING,
                worker=worker,
                heartbeat_at=now,
                started_at=now,
                cancel_requested=False,
            )
        )
        if not rowcount(taken):
            continue
        started = build_pb2.BuildStarted(
            build_id=task.build_id, app=task.app, worker=worker, attempt=task.attempt
        )
        emit(session, "started", started, build_id=task.build_id, app=task.app)
        claimed.append(
            Claimed(task.build_id, task.app, task.version, task.attempt, now, task.request)
        )
    return claimed


def _owned(build_id: str, worker: str, attempt: int) -> Any:
    return (
        (col(BuildTask.build_id) == build_id)
        & (col(BuildTask.status) == BuildStatus.RUNNING)
        & (col(BuildTask.worker) == worker)
        & (col(BuildTask.attempt) == attempt)
    )


async def owned_by(session: AsyncSession, *, worker: str) -> dict[str, tuple[int, bool]]:
    """build_id → (attempt, cancel requested) of the tasks RUNNING under this worker."""
    rows = await session.exec(
        select(BuildTask.build_id, BuildTask.attempt, BuildTask.cancel_requested).where(
            BuildTask.status == BuildStatus.RUNNING, BuildTask.worker == worker
        )
    )
    return {build_id: (attempt, flag) for build_id, attempt, flag in rows.all()}


async def heartbeat(
    session: AsyncSession, *, worker: str, build_ids: list[str], now: datetime | None = None
) -> None:
    if build_ids:
        await session.exec(
            update(BuildTask)
            .where(
                col(BuildTask.build_id).in_(build_ids),
                col(BuildTask.status) == BuildStatus.RUNNING,
                col(BuildTask.worker) == worker,
            )
            .values(heartbeat_at=now or utcnow())
        )


async def emit_step(session: AsyncSession, *, step: build_pb2.BuildStep) -> None:
    emit(session, "step", step, build_id=step.build_id, app=step.app)


async def succeed(
    session: AsyncSession, *, claimed: Claimed, worker: str, artifacts: list[dict[str, Any]]
) -> bool:
    """Finish a build this worker owns as SUCCEEDED; False if it is no longer ours."""
    done = await session.exec(
        update(BuildTask)
        .where(_owned(claimed.build_id, worker, claimed.attempt))
        .values(
            status=BuildStatus.SUCCEEDED,
            finished_at=utcnow(),
            artifacts=orjson.dumps(artifacts).decode(),
            reason=None,
        )
    )
    if not rowcount(done):
        return False
    message = build_pb2.BuildSucceeded(
        build_id=claimed.build_id, app=claimed.app, version=claimed.version
    )
    for artifact in artifacts:
        message.artifacts.add(**artifact)
    emit(session, "succeeded", message, build_id=claimed.build_id, app=claimed.app)
    return True


async def fail(
    session: AsyncSession,
    *,
    build_id: str,
    app: str,
    worker: str,
    attempt: int,
    reason: str,
    component: str = "",
) -> bool:
    """Finish a RUNNING build as FAILED (owner, or reaper naming the owner it takes over from)."""
    reason = reason[:MAX_REASON]
    done = await session.exec(
        update(BuildTask)
        .where(_owned(build_id, worker, attempt))
        .values(status=BuildStatus.FAILED, finished_at=utcnow(), reason=reason)
    )
    if not rowcount(done):
        return False
    failed = build_pb2.BuildFailed(build_id=build_id, app=app, component=component, reason=reason)
    emit(session, "failed", failed, build_id=build_id, app=app)
    return True


async def cancel_running(
    session: AsyncSession, *, build_id: str, app: str, worker: str, attempt: int
) -> bool:
    done = await session.exec(
        update(BuildTask)
        .where(_owned(build_id, worker, attempt))
        .values(status=BuildStatus.CANCELLED, finished_at=utcnow(), reason="cancelled")
    )
    if not rowcount(done):
        return False
    emit(
        session,
        "cancelled",
        build_pb2.BuildCancelled(build_id=build_id, app=app),
        build_id=build_id,
        app=app,
    )
    return True


async def release(session: AsyncSession, *, build_id: str, worker: str, attempt: int) -> bool:
    """Put a build back in the queue as it was (this worker is stopping; not the build's fault)."""
    done = await session.exec(
        update(BuildTask)
        .where(_owned(build_id, worker, attempt))
        .values(status=BuildStatus.QUEUED, worker=None, heartbeat_at=None, started_at=None)
    )
    return bool(rowcount(done))


async def reap(
    session: AsyncSession,
    *,
    now: datetime,
    heartbeat_timeout_s: float,
    build_timeout_s: float,
    max_attempts: int,
    skip: frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    """Recover RUNNING builds that are stuck; returns (build_id, what happened) pairs."""
    silent_since = now - timedelta(seconds=heartbeat_timeout_s)
    started_before = now - timedelta(seconds=build_timeout_s)
    query = select(BuildTask).where(
        col(BuildTask.status) == BuildStatus.RUNNING,
        or_(
            col(BuildTask.heartbeat_at) < silent_since,
            col(BuildTask.heartbeat_at).is_(None),
            col(BuildTask.started_at) < started_before,
        ),
    )
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True)
    outcome = []
    for task in (await session.exec(query)).all():
        if task.build_id in skip or task.worker is None:
            continue
        beat = as_utc(task.heartbeat_at) or as_utc(task.started_at) or now
        started = as_utc(task.started_at) or now
        if (now - started).total_seconds() > build_timeout_s:
            reason = f"build timed out after {build_timeout_s:g} s"
            if await fail(
                session,
                build_id=task.build_id,
                app=task.app,
                worker=task.worker,
                attempt=task.attempt,
                reason=reason,
            ):
                outcome.append((task.build_id, "timed out"))
        elif (now - beat).total_seconds() > heartbeat_timeout_s:
            outcome.append((task.build_id, await _orphaned(session, task, max_attempts)))
    return outcome


async def _orphaned(session: AsyncSession, task: BuildTask, max_attempts: int) -> str:
    assert task.worker is not None
    if task.cancel_requested:
        await cancel_running(
            session, build_id=task.build_id, app=task.app, worker=task.worker, attempt=task.attempt
        )
        return "cancelled"
    if task.attempt < max_attempts:
        await session.exec(
            update(BuildTask)
            .where(_owned(task.build_id, task.worker, task.attempt))
            .values(
                status=BuildStatus.QUEUED,
                attempt=task.attempt + 1,
                worker=None,
                heartbeat_at=None,
                started_at=None,
            )
        )
        log.warning(
            "build %s: worker %s stopped responding; queued again (attempt %d of %d)",
            task.build_id,
            task.worker,
            task.attempt + 1,
            max_attempts,
        )
        return "requeued"
    await fail(
        session,
        build_id=task.build_id,
        app=task.app,
        worker=task.worker,
        attempt=task.attempt,
        reason=f"build worker {task.worker} stopped responding",
    )
    return "failed"
