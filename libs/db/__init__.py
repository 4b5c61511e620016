"""Async engines and sessions from a URL: SQLite, PostgreSQL (asyncpg), MySQL/MariaDB (aiomysql)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Table, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger(__name__)

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
}


def async_url(url: str) -> str:
    """Give a plain database URL its async driver (postgresql:// → postgresql+asyncpg://)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    if "+" in scheme:
        return url
    if scheme not in _DRIVERS:
        raise ValueError(
            f"unsupported database scheme {scheme!r}: use sqlite, postgresql or mysql/mariadb"
        )
    return f"{_DRIVERS[scheme]}://{rest}"


def dialect(engine: AsyncEngine) -> str:
    return engine.dialect.name


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An engine for the URL; SQLite files get WAL and a busy timeout, their folder is made."""
    full = async_url(url)
    parsed = make_url(full)
    kwargs: dict[str, object] = {"echo": echo, "pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.pop("pool_pre_ping")
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_recycle"] = 1800
    engine = create_async_engine(full, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(conn, _record):  # type: ignore[no-untyped-def]
            # The sqlite3 module begins transactions on its own and breaks SAVEPOINT;
            # let SQLAlchemy emit BEGIN itself (see the begin hook below).
            conn.isolation_level = None
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # IMMEDIATE takes the write lock up front (waiting up to busy_timeout): a plain
            # BEGIN that reads, then writes after another commit fails with "locked" at once.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def create_tables(engine: AsyncEngine, tables: Sequence[type[SQLModel]]) -> None:
    """Create the given tables if missing (idempotent; Alembic takes over with issue 3)."""
    objs: list[Table] = [m.__table__ for m in tables]  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=objs))


async def wait_for_database(engine: AsyncEngine, stop: asyncio.Event) -> bool:
    """Retry until the database answers; False if asked to stop first."""
    from sqlalchemy import text

    delay = 0.5
    while not stop.is_set():
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # any driver's connection error
            log.warning(
                "waiting for database %s: %s (retry in %.1fs)",
                engine.url.render_as_string(hide_password=True),
                exc,
                delay,
            )
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, 10.0)
    return False
