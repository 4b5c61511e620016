"""Alembic migrations run at start-up, under a lock, so replicas can start together."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


def alembic_config(script_location: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    return config


def _upgrade(connection: Connection, config: Config, lock: str) -> None:
    dialect = connection.dialect.name
    # One replica migrates; the others wait on the lock, then find nothing to do.
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": lock})
    elif dialect in ("mysql", "mariadb"):
        got = connection.execute(text("SELECT GET_LOCK(:n, 120)"), {"n": lock}).scalar()
        if got != 1:
            raise RuntimeError(f"could not take the migration lock {lock!r} within 120 s")
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, "head")
    finally:
        if dialect in ("mysql", "mariadb"):
            connection.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": lock})


async def upgrade(engine: AsyncEngine, script_location: Path, *, lock: str) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    config = alembic_config(script_location)
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, config, lock)
    log.info("database schema is at the newest revision (%s)", script_location.name)
