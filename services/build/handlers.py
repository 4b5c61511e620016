"""build.commands in: queue builds once per build_id, cancel them, dead-letter the unusable."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events.worker import Batch, Record, TransientError
from services.build import service, validation
from services.build.models import BuildStatus

log = logging.getLogger(__name__)


@dataclass
class Intake:
    """What a batch changed, so the runner can act now rather than at its next poll."""

    queued: list[str] = field(default_factory=list)
    cancel_running: list[str] = field(default_factory=list)
    events: int = 0  # build.events rows written to the outbox


async def on_build_commands(batch: Batch, sessions: async_sessionmaker[AsyncSession]) -> Intake:
    intake = Intake()
    try:
        for record in batch.records:
            assert record.event is not None
            with batch.span(record, f"handle {record.event.type}"):
                if record.event.type == validation.REQUESTED:
                    await on_build_requested(record, batch=batch, sessions=sessions, intake=intake)
                elif record.event.type == validation.CANCEL_REQUESTED:
                    await on_cancel_requested(record, batch=batch, sessions=sessions, intake=intake)
                else:
                    await batch.reject(
                        record, f"unexpected event type {record.event.type!r} on build.commands"
                    )
    except (OperationalError, InterfaceError) as exc:  # the database is away: retry later
        raise TransientError(f"build database: {exc}") from exc
    return intake


async def on_build_requested(
    record: Record, *, batch: Batch, sessions: async_sessionmaker[AsyncSession], intake: Intake
) -> None:
    assert record.event is not None
    try:
        request = validation.parse_requested(record.event, record.key)
    except validation.Invalid as exc:
        if exc.build_id and exc.app:
            # Whoever asked learns why, instead of waiting for a build that never comes.
            async with service.writing(sessions) as session:
                written = await service.record_rejected(
                    session,
                    build_id=exc.build_id,
                    app=exc.app,
                    version=exc.version,
                    component=exc.component,
                    reason=exc.reason,
                )
            intake.events += int(written)
        await batch.reject(record, exc.reason)
        return
    async with service.writing(sessions) as session:
        created = await service.queue(session, request=request)
    if created:
        intake.queued.append(request.build_id)
        log.info("build %s of %s queued", request.build_id, request.app)
    else:
        log.info("build %s: already known, not built again", request.build_id)


async def on_cancel_requested(
    record: Record, *, batch: Batch, sessions: async_sessionmaker[AsyncSession], intake: Intake
) -> None:
    assert record.event is not None
    try:
        cancel = validation.parse_cancel(record.event)
    except validation.Invalid as exc:
        await batch.reject(record, exc.reason)
        return
    async with service.writing(sessions) as session:
        was = await service.request_cancel(session, build_id=cancel.build_id)
    if was is None:
        log.warning("cancel of unknown build %s ignored", cancel.build_id)
    elif was == BuildStatus.QUEUED:
        intake.events += 1
        log.info("build %s cancelled before it started", cancel.build_id)
    elif was == BuildStatus.RUNNING:
        intake.cancel_running.append(cancel.build_id)
        log.info("build %s: cancel requested while running", cancel.build_id)
