"""Build task rules for what arrives on build.commands: queue once, reject, cancel.

Every state change writes its build.events event in the same transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from sqlalchemy import CursorResult, false, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events import topics as t
from libs.events.envelope import CloudEvent
from libs.events.outbox import add_to_outbox
from libs.schemas.opsline.v1 import build_pb2
from services.build.models import FINAL, BuildStatus, BuildTask, utcnow

SOURCE = "opsline/build"
MAX_REASON = 4000


@contextlib.asynccontextmanager
async def writing(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A transaction that holds the write lock from its first statement.

    SQLite starts transactions deferred: one that reads and then writes while another
    connection committed in between fails at once with "database is locked" (its busy
    timeout cannot help a stale snapshot). Writing first makes it wait its turn instead.
    """
    async with sessions() as session, session.begin():
        if session.get_bind().dialect.name == "sqlite":
            await session.exec(
                update(BuildTask).where(false()).values(attempt=col(BuildTask.attempt))
            )
        yield session


def emit(session: AsyncSession, what: str, message: Message, *, build_id: str, app: str) -> None:
    event = CloudEvent.create(
        type=f"io.opsline.build.{what}",
        source=SOURCE,
        subject=build_id,
        data=MessageToDict(message, preserving_proto_field_name=True),
    )
    add_to_outbox(session, topic=t.BUILD_EVENTS, event=event, key=app)


def rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


async def get(session: AsyncSession, *, build_id: str) -> BuildTask | None:
    """The task of a build id, or None."""
    return await session.get(BuildTask, build_id)


async def get_all(
    session: AsyncSession, *, app: str | None = None, limit: int = 100
) -> list[BuildTask]:
    """The newest tasks, of one app when given."""
    query = select(BuildTask).order_by(col(BuildTask.created_at).desc()).limit(limit)
    if app is not None:
        query = query.where(BuildTask.app == app)
    return list((await session.exec(query)).all())


async def queue(session: AsyncSession, *, request: build_pb2.BuildRequested) -> bool:
    """A QUEUED task for a new build id; False (and nothing written) if it is known already."""
    if await session.get(BuildTask, request.build_id) is not None:
        return False
    body = MessageToDict(request, preserving_proto_field_name=True)
    try:
        async with session.begin_nested():  # another replica may insert the same id
            session.add(
                BuildTask(
                    build_id=request.build_id,
                    app=request.app,
                    version=request.version,
                    request=orjson.dumps(body).decode(),
                )
            )
    except IntegrityError:
        return False
    return True


async def record_rejected(
    session: AsyncSession, *, build_id: str, app: str, version: str, component: str, reason: str
) -> bool:
    """A request that cannot be built: a FAILED task, and the event that says why."""
    if await session.get(BuildTask, build_id) is not None:
        return False
    reason, now = reason[:MAX_REASON], utcnow()
    try:
        async with session.begin_nested():
            session.add(
                BuildTask(
                    build_id=build_id,
                    app=app,
                    version=version,
                    status=BuildStatus.FAILED,
                    reason=reason,
                    request="{}",
                    created_at=now,
                    finished_at=now,
                )
            )
    except IntegrityError:
        return False
    failed = build_pb2.BuildFailed(build_id=build_id, app=app, component=component, reason=reason)
    emit(session, "failed", failed, build_id=build_id, app=app)
    return True


async def request_cancel(session: AsyncSession, *, build_id: str) -> str | None:
    """Cancel a build: QUEUED ones at once, RUNNING ones by flag. Returns the status it had."""
    task = await session.get(BuildTask, build_id)
    if task is None or task.status in FINAL:
        return task.status if task else None
    if task.status == BuildStatus.QUEUED:
        done = await session.exec(
            update(BuildTask)
            .where(col(BuildTask.build_id) == build_id, col(BuildTask.status) == BuildStatus.QUEUED)
            .values(status=BuildStatus.CANCELLED, finished_at=utcnow(), reason="cancelled")
        )
        if rowcount(done):
            cancelled = build_pb2.BuildCancelled(build_id=build_id, app=task.app)
            emit(session, "cancelled", cancelled, build_id=build_id, app=task.app)
            return BuildStatus.QUEUED
        await session.refresh(task)  # claimed meanwhile: it is RUNNING now
    if task.status == BuildStatus.RUNNING:
        await session.exec(
            update(BuildTask)
            .where(
                col(BuildTask.build_id) == build_id, col(BuildTask.status) == BuildStatus.RUNNING
            )
            .values(cancel_requested=True)
        )
    return task.status
