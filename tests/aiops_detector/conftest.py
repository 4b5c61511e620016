"""A real SQLite database with the alert manager's tables, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs import db
from libs.events.idempotency import ProcessedEvent
from libs.events.outbox import OutboxMessage
from services.aiops_detector.models import TABLES


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.create_engine(f"sqlite:///{tmp_path}/detector.db")
    await db.create_tables(engine, [OutboxMessage, ProcessedEvent, *TABLES])
    yield db.session_factory(engine)
    await engine.dispose()


async def outbox_events(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, Any]]:
    """(ce type, data) of every event staged in the outbox, in order."""
    async with sessions() as session:
        rows = await session.exec(select(OutboxMessage).order_by(OutboxMessage.id))  # type: ignore[arg-type]
        out = []
        for row in rows:
            headers = dict(orjson.loads(row.headers))
            out.append((headers["ce_type"], orjson.loads(row.value)))
        return out
