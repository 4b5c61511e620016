"""Handlers of build: for now, idempotent intake of what it consumes."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events.worker import Batch
from libs.member import record_once


async def on_events(batch: Batch, sessions: async_sessionmaker[AsyncSession]) -> None:
    await record_once(batch, sessions, consumer="build")
