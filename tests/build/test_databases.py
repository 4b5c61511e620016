"""The queue on PostgreSQL and MariaDB too: row locks, compare-and-set updates, UTC times.

The servers come from tests/libs/conftest.py (skipped, with the reason, where not installed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from libs import db
from libs.events.outbox import OutboxMessage
from libs.objectstore import LocalStore
from services.build import claims
from services.build.builders import default_builders
from services.build.handlers import on_build_commands
from services.build.models import TABLES, as_utc, utcnow
from services.build.runner import Runner
from services.build.settings import BuildSettings
from tests.build.conftest import batch, cancel, emitted, kinds, make_source, requested, task

SERVERS = {"postgresql": "postgres_server", "mariadb": "mariadb_server"}
ALL = [OutboxMessage, *TABLES]


async def _drop(engine: AsyncEngine) -> None:
    objs = [m.__table__ for m in ALL]  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.drop_all(c, tables=objs))


@pytest.fixture(params=["postgresql", "mariadb"])
async def server_sessions(
    request: pytest.FixtureRequest,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    server = request.getfixturevalue(SERVERS[request.param])
    engine = db.create_engine(server.url)
    await _drop(engine)  # the servers are shared with other tests
    await db.create_tables(engine, ALL)
    yield db.session_factory(engine)
    await _drop(engine)
    await engine.dispose()


def web(tmp_path: Path) -> list[dict[str, object]]:
    return [{"name": "web", "type": "process", "source": {"dir": str(make_source(tmp_path))}}]


async def test_queue_claim_and_build(
    server_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    sessions = server_sessions
    for n in range(4):
        event = requested(f"b-{n}", web(tmp_path / str(n)))
        await on_build_commands(batch(event, event), sessions)
    assert (await task(sessions, "b-0")).status == "QUEUED"
    # Two replicas claiming at once take different builds (FOR UPDATE SKIP LOCKED).
    async with sessions() as one, one.begin():
        first = await claims.claim(one, worker="w-1", limit=2)
        async with sessions() as two, two.begin():
            second = await claims.claim(two, worker="w-2", limit=2)
    assert [c.build_id for c in first] == ["b-0", "b-1"]
    assert [c.build_id for c in second] == ["b-2", "b-3"]
    stored = await task(sessions, "b-0")
    assert stored.worker == "w-1" and as_utc(stored.started_at) is not None
    started = as_utc(stored.started_at)
    assert started is not None and started.tzinfo is UTC
    assert abs((utcnow() - started).total_seconds()) < 30
    # The owner heartbeats and finishes; a stranger's finish is refused.
    async with sessions() as session, session.begin():
        await claims.heartbeat(session, worker="w-1", build_ids=["b-0", "b-1"])
        assert await claims.owned_by(session, worker="w-1") == {
            "b-0": (1, False),
            "b-1": (1, False),
        }
        assert not await claims.fail(
            session, build_id="b-0", app="shop", worker="w-2", attempt=1, reason="no"
        )
        assert await claims.succeed(session, claimed=first[0], worker="w-1", artifacts=[])
    # Cancel of a running build sets the flag; the reaper re-queues, then fails, the rest.
    await on_build_commands(batch(cancel("b-1")), sessions)
    assert (await task(sessions, "b-1")).cancel_requested
    reaper = Runner(
        sessions=sessions,
        settings=BuildSettings(worker_id="reaper"),
        store=None,  # type: ignore[arg-type]
        builders={},
    )
    outcome = await reaper.reap_once(utcnow() + timedelta(seconds=31))
    assert sorted(outcome) == [("b-1", "cancelled"), ("b-2", "requeued"), ("b-3", "requeued")]
    stored = await task(sessions, "b-2")
    assert (stored.status, stored.attempt) == ("QUEUED", 2)
    assert kinds(await emitted(sessions)) == [*(["started"] * 4), "succeeded", "cancelled"]


async def test_the_runner_on_a_server(
    server_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    from services.build.artifacts import ArtifactStore

    sessions = server_sessions
    await on_build_commands(batch(requested("b-9", web(tmp_path))), sessions)
    runner = Runner(
        sessions=sessions,
        settings=BuildSettings(worker_id="w-1", heartbeat_s=0.2),
        store=ArtifactStore(LocalStore(tmp_path / "artifacts")),
        builders=default_builders(),
    )
    stop = asyncio.Event()
    loop = asyncio.create_task(runner.run(stop))
    for _ in range(50):
        if (await task(sessions, "b-9")).status == "SUCCEEDED":
            break
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(loop, 10)
    assert kinds(await emitted(sessions))[-1] == "succeeded"
