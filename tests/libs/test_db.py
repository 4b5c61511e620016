"""libs.db, the idempotency helpers and the transactional outbox on real databases.

Every database test runs on SQLite (a file), PostgreSQL 15 and MariaDB; the servers are
started once per session by tests/libs/conftest.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs import db
from libs.events.envelope import CloudEvent, from_kafka
from libs.events.idempotency import ProcessedEvent, already_processed, mark_processed
from libs.events.outbox import OutboxMessage, OutboxRelay, add_to_outbox

# The relay's own queries use session.execute(); sqlmodel nags about it. Not what is tested here.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:\s*.*You probably want to use `session.exec:DeprecationWarning:libs.events.outbox"
)


# --- async_url ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/ops", "postgresql+asyncpg://u:p@db:5432/ops"),
        ("postgres://u@db/ops", "postgresql+asyncpg://u@db/ops"),
        (
            "mysql://u:p@db:3306/ops?charset=utf8mb4",
            "mysql+aiomysql://u:p@db:3306/ops?charset=utf8mb4",
        ),
        ("mariadb://u@db/ops", "mysql+aiomysql://u@db/ops"),
        ("sqlite:///var/lib/opsline/x.db", "sqlite+aiosqlite:///var/lib/opsline/x.db"),
        ("sqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
    ],
)
def test_async_url_gives_the_async_driver(url: str, expected: str) -> None:
    assert db.async_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://u@db/ops",
        "postgresql+psycopg://u@db/ops",
        "mysql+aiomysql://u@db/ops",
        "sqlite+aiosqlite:///x.db",
    ],
)
def test_async_url_leaves_a_url_with_a_driver_alone(url: str) -> None:
    assert db.async_url(url) == url


def test_async_url_names_an_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unsupported database scheme 'oracle'"):
        db.async_url("oracle://u@db/ops")


def test_async_url_refuses_text_that_is_not_a_url() -> None:
    with pytest.raises(ValueError, match="not a database URL"):
        db.async_url("just-a-path.db")


# --- engines on three databases ----------------------------------------------------------

TABLES: list[type[SQLModel]] = [OutboxMessage, ProcessedEvent]
BACKENDS = ["sqlite", "postgresql", "mariadb"]
SERVER_FIXTURES = {"postgresql": "postgres_server", "mariadb": "mariadb_server"}


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # a folder that does not exist yet: create_engine must make it
        return f"sqlite:///{tmp_path}/state/opsline.db"
    server = request.getfixturevalue(SERVER_FIXTURES[request.param])
    return str(server.url)


async def _drop_tables(engine: AsyncEngine) -> None:
    objs = [m.__table__ for m in TABLES]  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.drop_all(c, tables=objs))


async def _table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


@pytest.fixture
def backend(request: pytest.FixtureRequest, db_url: str) -> str:
    return str(request.node.callspec.params["db_url"])


@pytest.fixture
async def bare_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on an empty schema (the servers are shared: leftovers are dropped)."""
    engine = db.create_engine(db_url)
    await _drop_tables(engine)
    yield engine
    await _drop_tables(engine)
    await engine.dispose()


@pytest.fixture
async def engine(bare_engine: AsyncEngine) -> AsyncEngine:
    await db.create_tables(bare_engine, TABLES)
    return bare_engine


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return db.session_factory(engine)


async def test_engine_uses_the_async_driver_of_its_database(
    bare_engine: AsyncEngine, db_url: str
) -> None:
    expected = {
        "sqlite": "aiosqlite",
        "postgresql": "asyncpg",
        "mysql": "aiomysql",
        "mariadb": "aiomysql",
    }
    assert bare_engine.url.get_driver_name() == expected[db_url.split(":")[0]]
    assert db.dialect(bare_engine) in db_url or (
        db.dialect(bare_engine) in ("mysql", "mariadb") and db_url.startswith("mariadb")
    )


async def test_create_tables_creates_outbox_and_processed_events(
    bare_engine: AsyncEngine,
) -> None:
    assert not {"outbox", "processed_events"} & await _table_names(bare_engine)
    await db.create_tables(bare_engine, TABLES)
    assert {"outbox", "processed_events"} <= await _table_names(bare_engine)


async def test_create_tables_is_idempotent_and_keeps_rows(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    async with sessions() as session:
        assert await mark_processed(session, consumer="c", event_id="e1")
        await session.commit()
    await db.create_tables(engine, TABLES)  # second start of a service
    async with sessions() as session:
        assert await already_processed(session, consumer="c", event_id="e1")


async def test_create_tables_only_creates_the_tables_asked_for(bare_engine: AsyncEngine) -> None:
    await db.create_tables(bare_engine, [ProcessedEvent])
    names = await _table_names(bare_engine)
    assert "processed_events" in names
    assert "outbox" not in names


async def test_sqlite_file_and_its_folder_are_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "svc.db"
    engine = db.create_engine(f"sqlite:///{path}")
    try:
        await db.create_tables(engine, TABLES)
        assert path.exists()
        async with engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        assert mode == "wal"
    finally:
        await engine.dispose()


async def test_wait_for_database_answers_true_when_the_database_is_up(
    engine: AsyncEngine,
) -> None:
    assert await asyncio.wait_for(db.wait_for_database(engine, asyncio.Event()), 10) is True


async def test_wait_for_database_gives_up_when_asked_to_stop() -> None:
    # nothing listens on port 1; the stop event ends the retry loop
    engine = db.create_engine("postgresql://nobody@127.0.0.1:1/none")
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(db.wait_for_database(engine, stop))
        await asyncio.sleep(0.2)
        stop.set()
        assert await asyncio.wait_for(task, 10) is False
    finally:
        await engine.dispose()


# --- idempotency -----------------------------------------------------------------------


async def _processed_rows(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    async with sessions() as session:
        result = await session.exec(
            select(ProcessedEvent.consumer, ProcessedEvent.event_id).order_by(
                ProcessedEvent.consumer,
                ProcessedEvent.event_id,  # type: ignore[arg-type]
            )
        )
        return [(c, e) for c, e in result.all()]


async def test_an_event_is_processed_once_per_consumer(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        assert await already_processed(session, consumer="alerts", event_id="ev-1") is False
        assert await mark_processed(session, consumer="alerts", event_id="ev-1") is True
        await session.commit()
    async with sessions() as session:
        assert await already_processed(session, consumer="alerts", event_id="ev-1") is True
        assert await mark_processed(session, consumer="alerts", event_id="ev-1") is False
        # the session is usable again after the refused insert
        assert await already_processed(session, consumer="alerts", event_id="ev-1") is True
    assert await _processed_rows(sessions) == [("alerts", "ev-1")]


async def test_consumers_and_event_ids_are_independent(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        assert await mark_processed(session, consumer="alerts", event_id="ev-1")
        assert await mark_processed(session, consumer="deploys", event_id="ev-1")
        assert await mark_processed(session, consumer="alerts", event_id="ev-2")
        await session.commit()
    async with sessions() as session:
        assert await already_processed(session, consumer="deploys", event_id="ev-1")
        assert not await already_processed(session, consumer="deploys", event_id="ev-2")
        assert not await already_processed(session, consumer="builds", event_id="ev-1")
    assert await _processed_rows(sessions) == [
        ("alerts", "ev-1"),
        ("alerts", "ev-2"),
        ("deploys", "ev-1"),
    ]


async def test_an_uncommitted_mark_is_not_kept(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        assert await mark_processed(session, consumer="c", event_id="lost")
        await session.rollback()
    async with sessions() as session:
        assert not await already_processed(session, consumer="c", event_id="lost")
        assert await mark_processed(session, consumer="c", event_id="lost") is True


async def test_mark_commits_with_the_callers_other_changes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    event = CloudEvent.create(type="io.example.done", source="/t", data={"n": 1})
    async with sessions() as session:
        assert await mark_processed(session, consumer="c", event_id="ev-9")
        add_to_outbox(session, topic="app.events", event=event)
        await session.commit()
    async with sessions() as session:
        rows = (await session.exec(select(OutboxMessage))).all()
    assert len(rows) == 1
    assert await _processed_rows(sessions) == [("c", "ev-9")]


async def test_a_second_replica_marking_the_same_event_loses(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as first, sessions() as second:
        assert await mark_processed(first, consumer="c", event_id="race") is True
        racing = asyncio.create_task(mark_processed(second, consumer="c", event_id="race"))
        await asyncio.sleep(0.3)
        assert not racing.done(), "the second insert must wait for the first transaction"
        await first.commit()
        assert await asyncio.wait_for(racing, 30) is False
    assert await _processed_rows(sessions) == [("c", "race")]


async def test_a_second_replica_wins_when_the_first_rolls_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as first, sessions() as second:
        assert await mark_processed(first, consumer="c", event_id="race") is True
        racing = asyncio.create_task(mark_processed(second, consumer="c", event_id="race"))
        await asyncio.sleep(0.3)
        await first.rollback()
        assert await asyncio.wait_for(racing, 30) is True
        await second.commit()
    assert await _processed_rows(sessions) == [("c", "race")]


# --- outbox ------------------------------------------------------------------------------


async def _outbox(sessions: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sessions() as session:
        result = await session.exec(
            select(OutboxMessage).order_by(OutboxMessage.id)  # type: ignore[arg-type]
        )
        return list(result.all())


def _event(n: int, **kw: Any) -> CloudEvent:
    return CloudEvent.create(
        type="io.example.deployed", source="/tests/outbox", data={"n": n}, subject=f"app-{n}", **kw
    )


async def test_add_to_outbox_stores_a_kafka_record_in_binary_mode(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    event = _event(1, extensions={"partitionkey": "app-1", "tenant": "acme"})
    async with sessions() as session:
        staged = add_to_outbox(session, topic="app.events", event=event)
        assert staged.id is None  # not flushed yet
        await session.commit()
    [row] = await _outbox(sessions)
    assert row.id is not None
    assert row.topic == "app.events"
    assert row.key == b"app-1"  # the partitionkey extension
    assert row.value == b'{"n":1}'
    assert row.published_at is None
    assert row.created_at is not None
    stored = orjson.loads(row.headers)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in stored)
    headers = dict(stored)
    assert headers["ce_id"] == event.id
    assert headers["ce_source"] == "/tests/outbox"
    assert headers["ce_type"] == "io.example.deployed"
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_subject"] == "app-1"
    assert headers["ce_time"] == event.time
    assert headers["ce_partitionkey"] == "app-1"
    assert headers["ce_tenant"] == "acme"
    assert headers["content-type"] == "application/json"
    # what the relay will send decodes back to the same event
    assert from_kafka(row.value, [(k, v.encode()) for k, v in stored]) == event


async def test_add_to_outbox_explicit_key_and_no_key(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        add_to_outbox(
            session, topic="t", event=_event(1, extensions={"partitionkey": "pk"}), key="explicit"
        )
        add_to_outbox(session, topic="t", event=_event(2))
        await session.commit()
    first, second = await _outbox(sessions)
    assert first.key == b"explicit"
    assert second.key is None


async def test_add_to_outbox_keeps_binary_data_byte_for_byte(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    payload = bytes(range(256)) * 40  # NUL, high bytes, > 8 KiB
    event = CloudEvent.create(
        type="io.example.blob",
        source="/t",
        data=payload,
        datacontenttype="application/octet-stream",
    )
    async with sessions() as session:
        add_to_outbox(session, topic="t", event=event)
        await session.commit()
    [row] = await _outbox(sessions)
    assert row.value == payload
    assert dict(orjson.loads(row.headers))["content-type"] == "application/octet-stream"


async def test_add_to_outbox_carries_the_current_trace_context(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ctx = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    async with sessions() as session:
        with trace.use_span(NonRecordingSpan(ctx)):
            add_to_outbox(session, topic="t", event=_event(1))
        add_to_outbox(session, topic="t", event=_event(2))  # outside any span
        await session.commit()
    traced, untraced = await _outbox(sessions)
    assert dict(orjson.loads(traced.headers))["traceparent"] == (
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )
    assert "traceparent" not in dict(orjson.loads(untraced.headers))


async def test_outbox_rows_vanish_with_a_rolled_back_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        add_to_outbox(session, topic="t", event=_event(1))
        await session.flush()
        await session.rollback()
    assert await _outbox(sessions) == []


class FakeProducer:
    """Test double of libs.events.publisher.Publisher: records what send_raw is given.

    send_raw returns a future like the real one (resolved when "the broker" acknowledges);
    `fail_at` makes the future of that call (0-based) fail, `raise_at` makes the call raise.
    `gate`, when set, holds every send until it is opened.
    """

    def __init__(
        self,
        *,
        fail_at: int | None = None,
        raise_at: int | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self.calls = 0
        self.fail_at = fail_at
        self.raise_at = raise_at
        self.gate = gate
        self.waiting = asyncio.Event()

    async def send_raw(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> asyncio.Future[Any]:
        call, self.calls = self.calls, self.calls + 1
        if call == self.raise_at:
            raise ConnectionError("broker unreachable")
        if self.gate is not None:
            self.waiting.set()
            await self.gate.wait()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if call == self.fail_at:
            future.set_exception(TimeoutError("no acknowledgement"))
        else:
            self.sent.append((topic, value, key, headers))
            future.set_result(("metadata", call))
        return future


async def _stage(sessions: async_sessionmaker[AsyncSession], n: int) -> list[CloudEvent]:
    """Commit n outbox rows with add_to_outbox."""
    events = [_event(i, extensions={"partitionkey": f"k{i}"}) for i in range(n)]
    async with sessions() as session:
        rows = [
            add_to_outbox(session, topic=f"topic-{i % 2}", event=event)
            for i, event in enumerate(events)
        ]
        assert len(rows) == n
        await session.commit()
    return events


def _sent_ids(producer: FakeProducer) -> list[str]:
    return [dict(headers)["ce_id"].decode() for _, _, _, headers in producer.sent]


async def test_relay_publishes_in_id_order_and_marks_rows_published(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    events = await _stage(sessions, 5)
    producer = FakeProducer()
    relay = OutboxRelay(sessions=sessions, publisher=producer, batch_size=3)  # type: ignore[arg-type]

    assert await relay.relay_once() == 3
    rows = await _outbox(sessions)
    assert [r.published_at is not None for r in rows] == [True, True, True, False, False]
    assert _sent_ids(producer) == [e.id for e in events[:3]]

    assert await relay.relay_once() == 2
    assert await relay.relay_once() == 0
    assert relay.relayed == 5
    assert _sent_ids(producer) == [e.id for e in events]
    assert all(r.published_at is not None for r in await _outbox(sessions))
    # each record is sent as stored: topic, key, value and the headers as bytes
    rows = await _outbox(sessions)
    for row, (topic, value, key, headers) in zip(rows, producer.sent, strict=True):
        assert (topic, value, key) == (row.topic, row.value, row.key)
        assert headers == [(k, v.encode()) for k, v in orjson.loads(row.headers)]
    assert producer.sent[1][0] == "topic-1"
    assert producer.sent[1][2] == b"k1"


async def test_relay_leaves_rows_unpublished_when_a_send_is_not_acknowledged(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    events = await _stage(sessions, 3)
    failing = FakeProducer(fail_at=1)
    relay = OutboxRelay(sessions=sessions, publisher=failing)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        await relay.relay_once()
    assert all(r.published_at is None for r in await _outbox(sessions))
    assert relay.relayed == 0

    working = FakeProducer()
    relay.publisher = working  # type: ignore[assignment]
    assert await relay.relay_once() == 3  # retried: at-least-once
    assert _sent_ids(working) == [e.id for e in events]
    assert all(r.published_at is not None for r in await _outbox(sessions))


async def test_relay_leaves_rows_unpublished_when_sending_raises(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _stage(sessions, 2)
    relay = OutboxRelay(sessions=sessions, publisher=FakeProducer(raise_at=0))  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    assert [r.published_at for r in await _outbox(sessions)] == [None, None]


async def test_relay_run_retries_until_the_broker_takes_the_rows(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _stage(sessions, 2)
    producer = FakeProducer(fail_at=0)  # first attempt fails, the retry succeeds
    relay = OutboxRelay(sessions=sessions, publisher=producer, interval=0.05)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        for _ in range(200):
            if relay.relayed == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        relay.wake()
        await asyncio.wait_for(task, 10)
    assert relay.relayed == 2
    assert all(r.published_at is not None for r in await _outbox(sessions))


@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
async def test_concurrent_relays_skip_the_rows_claimed_by_the_other(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    events = await _stage(sessions, 4)
    gate = asyncio.Event()
    held = FakeProducer(gate=gate)
    first = OutboxRelay(sessions=sessions, publisher=held, batch_size=2)  # type: ignore[arg-type]
    first_task = asyncio.create_task(first.relay_once())
    try:
        # the first relay holds rows 1-2 (locked, mid-send); the second must skip them
        await asyncio.wait_for(held.waiting.wait(), 10)
        free = FakeProducer()
        second = OutboxRelay(sessions=sessions, publisher=free, batch_size=10)  # type: ignore[arg-type]
        assert await asyncio.wait_for(second.relay_once(), 10) == 2
        assert _sent_ids(free) == [e.id for e in events[2:]]
    finally:
        gate.set()
    assert await asyncio.wait_for(first_task, 10) == 2
    assert _sent_ids(held) == [e.id for e in events[:2]]
    assert all(r.published_at is not None for r in await _outbox(sessions))


@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
async def test_concurrent_relays_never_send_a_row_twice(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    events = await _stage(sessions, 30)

    class SlowProducer(FakeProducer):
        async def send_raw(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            await asyncio.sleep(0.005)
            return await super().send_raw(*args, **kwargs)

    producers = [SlowProducer() for _ in range(3)]
    relays = [
        OutboxRelay(sessions=sessions, publisher=p, batch_size=4)  # type: ignore[arg-type]
        for p in producers
    ]

    async def drain(relay: OutboxRelay) -> None:
        while await relay.relay_once():
            pass

    await asyncio.wait_for(asyncio.gather(*(drain(r) for r in relays)), 60)
    sent = [i for p in producers for i in _sent_ids(p)]
    assert sorted(sent) == sorted(e.id for e in events)  # every row once, none twice
    assert sum(r.relayed for r in relays) == 30
    for p in producers:  # each relay sends its claims in id order
        order = [e.id for e in events]
        ids = _sent_ids(p)
        assert ids == sorted(ids, key=order.index)
    assert all(r.published_at is not None for r in await _outbox(sessions))
