"""Idempotent consumers: remember processed event ids in the consumer's own database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession


class ProcessedEvent(SQLModel, table=True):
    __tablename__ = "processed_events"

    consumer: str = Field(primary_key=True, max_length=100)
    event_id: str = Field(primary_key=True, max_length=255)
    processed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


async def already_processed(session: AsyncSession, *, consumer: str, event_id: str) -> bool:
    """True if this consumer has handled the event before."""
    result = await session.exec(
        select(ProcessedEvent.event_id).where(
            ProcessedEvent.consumer == consumer, ProcessedEvent.event_id == event_id
        )
    )
    return result.first() is not None


async def mark_processed(session: AsyncSession, *, consumer: str, event_id: str) -> bool:
    """Record the event in the caller's transaction; False if another replica beat us to it.

    A savepoint keeps the rest of the caller's transaction when the id is already there.
    """
    try:
        async with session.begin_nested():
            session.add(ProcessedEvent(consumer=consumer, event_id=event_id))
    except IntegrityError:
        return False
    return True
