"""A database-owning consumer service: its DB, outbox relay, one worker, ops routes.

appmanager and deploy share this shape; each passes its own topics, handler, tables
and background work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from libs import db
from libs.config import CommonSettings
from libs.db.migrate import upgrade
from libs.events.idempotency import ProcessedEvent
from libs.events.outbox import OutboxMessage, OutboxRelay
from libs.events.publisher import Publisher, connect_backbone, topic_guard
from libs.events.worker import Batch, Worker
from libs.runtime import ServiceRuntime, TaskFactory, add_ops_routes

log = logging.getLogger(__name__)

MemberHandler = Callable[[Batch, async_sessionmaker[AsyncSession]], Awaitable[None]]


def create_member_app(
    *,
    name: str,
    common: CommonSettings,
    database_url: str | None,
    group_id: str,
    topics: list[str],
    handler: MemberHandler,
    tables: Sequence[type[SQLModel]] = (),
    migrations: Path | None = None,
    background: Sequence[tuple[str, TaskFactory]] = (),
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """`background` tasks start once the database and Kafka are there; `on_shutdown` runs
    after they stopped."""
    runtime = ServiceRuntime(name)
    engine = db.create_engine(database_url or f"sqlite:///{common.home}/{name}.db")
    sessions = db.session_factory(engine)
    publisher = Publisher(common.kafka_bootstrap, client_id=name)
    relay = OutboxRelay(sessions=sessions, publisher=publisher)
    state = {"database": False, "kafka": False}

    async def handle(batch: Batch) -> None:
        await handler(batch, sessions)

    worker = Worker(
        name=f"{name}-worker",
        service=name,
        bootstrap=common.kafka_bootstrap,
        group_id=group_id,
        topics=topics,
        handler=handle,
        publisher=publisher,
    )

    async def start(stop: asyncio.Event) -> None:
        if not await db.wait_for_database(engine, stop):
            return
        if migrations is not None:  # Alembic owns the schema, outbox tables included
            await upgrade(engine, migrations, lock=f"opsline-{name}-migrations")
        else:
            await db.create_tables(engine, [OutboxMessage, ProcessedEvent, *tables])
        state["database"] = True
        if not await connect_backbone(
            publisher,
            bootstrap=common.kafka_bootstrap,
            partitions=common.topic_partitions,
            stop=stop,
        ):
            return
        state["kafka"] = True
        runtime.spawn("outbox-relay", relay.run)
        runtime.spawn(worker.name, worker.run)
        for task_name, factory in background:
            runtime.spawn(task_name, factory)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.spawn("start", start)
        runtime.spawn("topics", topic_guard(common.kafka_bootstrap, common.topic_partitions))
        yield
        await runtime.shutdown()
        if on_shutdown is not None:
            await on_shutdown()
        await publisher.stop()
        await engine.dispose()

    app = FastAPI(title=f"opsline {name}", lifespan=lifespan)
    runtime.check("database", lambda: state["database"])
    runtime.check("kafka", lambda: state["kafka"])
    runtime.check("worker", lambda: worker.ready)
    add_ops_routes(app, runtime)
    app.state.runtime = runtime
    app.state.sessions = sessions
    app.state.publisher = publisher
    app.state.relay = relay
    app.state.worker = worker
    return app
