"""build: build.commands in, builds run from the database queue, build.events out (outbox)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator

from fastapi import FastAPI

from libs import db
from libs.config import CommonSettings
from libs.events import topics as t
from libs.events.outbox import OutboxMessage, OutboxRelay
from libs.events.publisher import Publisher, connect_backbone, topic_guard
from libs.events.worker import Batch, Worker
from libs.internal import internal_token_guard
from libs.observability.logging import setup_logging
from libs.observability.tracing import setup_tracing
from libs.runtime import ServiceRuntime, add_ops_routes, serve
from services.build import api, handlers
from services.build.artifacts import ArtifactConfigError, create_store
from services.build.builders import Builder, default_builders
from services.build.kaniko import KanikoBuilder
from services.build.models import TABLES
from services.build.runner import Runner
from services.build.settings import BuildSettings

NAME = "build"
log = logging.getLogger(__name__)


def image_builder(settings: BuildSettings) -> Builder | None:
    """A kaniko builder when a cluster is configured; without one, image builds fail clearly."""
    if not settings.kubeconfig:
        return None
    return KanikoBuilder(
        kubeconfig=settings.kubeconfig,
        builder_image=settings.builder_image,
        namespace=settings.builder_namespace,
        registry=settings.image_registry,
        deadline_s=int(settings.build_timeout_s),
    )


def create_app(settings: BuildSettings, common: CommonSettings) -> FastAPI:
    """The build service; raises ArtifactConfigError when the artifact store cannot work."""
    runtime = ServiceRuntime(NAME)
    store = create_store(
        artifact_url=settings.artifact_url, artifact_dir=settings.artifact_root(common.home)
    )
    engine = db.create_engine(settings.database(common.home))
    sessions = db.session_factory(engine)
    publisher = Publisher(common.kafka_bootstrap, client_id=NAME)
    relay = OutboxRelay(sessions=sessions, publisher=publisher)
    runner = Runner(
        sessions=sessions,
        settings=settings,
        store=store,
        builders=default_builders(image_builder(settings)),
        on_commit=relay.wake,
    )
    state = {"database": False, "kafka": False}

    async def handle(batch: Batch) -> None:
        intake = await handlers.on_build_commands(batch, sessions)
        if intake.events:
            relay.wake()
        if intake.queued:
            runner.wake()
        for build_id in intake.cancel_running:
            runner.interrupt(build_id, "cancel")  # ours: stop now; another replica's: its watch

    worker = Worker(
        name="build-worker",
        service=NAME,
        bootstrap=common.kafka_bootstrap,
        group_id=settings.group_id,
        topics=[t.BUILD_COMMANDS],
        handler=handle,
        publisher=publisher,
    )

    async def start(stop: asyncio.Event) -> None:
        if not await db.wait_for_database(engine, stop):
            return
        await db.create_tables(engine, [OutboxMessage, *TABLES])
        state["database"] = True
        # Builds need only the database: queued work goes on while Kafka is away.
        runtime.spawn("runner", runner.run)
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

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.spawn("start", start)
        runtime.spawn("topics", topic_guard(common.kafka_bootstrap, common.topic_partitions))
        yield
        await runtime.shutdown(timeout=15.0)
        await publisher.stop()
        await engine.dispose()

    app = FastAPI(title=f"opsline {NAME}", lifespan=lifespan)
    runtime.check("database", lambda: state["database"])
    runtime.check("kafka", lambda: state["kafka"])
    runtime.check("worker", lambda: worker.ready)
    runtime.check("runner", lambda: runner.running)
    add_ops_routes(app, runtime)
    app.include_router(api.build_router(guard=internal_token_guard(common.internal_token)))
    app.state.runtime = runtime
    app.state.sessions = sessions
    app.state.publisher = publisher
    app.state.relay = relay
    app.state.worker = worker
    app.state.runner = runner
    return app


def main() -> None:
    common = CommonSettings()
    settings = BuildSettings()
    setup_logging(NAME, common.log_level)
    setup_tracing(NAME)
    try:
        app = create_app(settings, common)
    except ArtifactConfigError as exc:
        sys.exit(f"build: {exc}")
    serve(app, host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
