"""Transactional outbox: a state change and its event commit together; a relay publishes them.

Rows are relayed in id order and marked published only after the broker acknowledged
them, so a crash between the two re-sends (at-least-once; consumers are idempotent).
Several replicas may relay at once: on PostgreSQL and MySQL/MariaDB rows are claimed with
SELECT … FOR UPDATE SKIP LOCKED. SQLite has no row locks, so two relays on one file can
both send a row; that is still at-least-once, and SQLite means one replica anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import orjson
from sqlalchemy import Column, LargeBinary, Text, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events.envelope import CloudEvent, to_kafka
from libs.events.publisher import Publisher
from libs.observability.tracing import kafka_headers_for_current_span

log = logging.getLogger(__name__)


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=200)
    key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    # 16 MiB: MySQL/MariaDB make that a MEDIUMBLOB (a plain BLOB stops at 64 KiB)
    value: bytes = Field(sa_column=Column(LargeBinary(length=16 << 20), nullable=False))
    headers: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    published_at: datetime | None = Field(default=None, index=True)


def add_to_outbox(
    session: AsyncSession, *, topic: str, event: CloudEvent, key: str | None = None
) -> OutboxMessage:
    """Stage an event in the caller's transaction; it is published after commit."""
    ev_key, value, headers = to_kafka(event, extra=kafka_headers_for_current_span())
    row = OutboxMessage(
        topic=topic,
        key=key.encode() if key else ev_key,
        value=value,
        headers=orjson.dumps([[k, v.decode()] for k, v in headers]).decode(),
    )
    session.add(row)
    return row


class OutboxRelay:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        publisher: Publisher,
        batch_size: int = 200,
        interval: float = 0.5,
    ) -> None:
        self.sessions = sessions
        self.publisher = publisher
        self.batch_size = batch_size
        self.interval = interval
        self._wake = asyncio.Event()
        self.relayed = 0

    def wake(self) -> None:
        """Relay now rather than at the next poll (call after committing outbox rows)."""
        self._wake.set()

    async def relay_once(self) -> int:
        async with self.sessions() as session, session.begin():
            query = (
                select(OutboxMessage)
                .where(OutboxMessage.published_at.is_(None))  # type: ignore[union-attr]
                .order_by(OutboxMessage.id)  # type: ignore[arg-type]
                .limit(self.batch_size)
            )
            if session.get_bind().dialect.name != "sqlite":
                query = query.with_for_update(skip_locked=True)
            rows = list((await session.execute(query)).scalars())
            if not rows:
                return 0
            futures = []
            for row in rows:
                headers = [(k, v.encode()) for k, v in orjson.loads(row.headers)]
                futures.append(
                    await self.publisher.send_raw(
                        row.topic, row.value, key=row.key, headers=headers
                    )
                )
            await asyncio.gather(*futures)
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([r.id for r in rows]))  # type: ignore[union-attr]
                .values(published_at=datetime.now(UTC))
            )
        self.relayed += len(rows)
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        delay = self.interval
        while not stop.is_set():
            try:
                while await self.relay_once():
                    pass
                delay = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay: %s (retry in %.1fs)", exc, delay)
                delay = min(delay * 2, 10.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
