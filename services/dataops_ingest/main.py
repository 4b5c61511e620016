"""dataops-ingest: normalizes what tools publish and writes it to Elasticsearch."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from elasticsearch import AsyncElasticsearch
from fastapi import FastAPI

from libs.config import CommonSettings
from libs.events import topics as t
from libs.events.publisher import Publisher, connect_backbone, topic_guard
from libs.events.worker import Worker
from libs.internal import internal_token_guard
from libs.observability.logging import setup_logging
from libs.observability.tracing import setup_tracing
from libs.runtime import ServiceRuntime, add_ops_routes, serve
from services.dataops_ingest import api, handlers, store
from services.dataops_ingest.settings import IngestSettings

NAME = "dataops-ingest"
log = logging.getLogger(__name__)


def create_app(settings: IngestSettings, common: CommonSettings) -> FastAPI:
    runtime = ServiceRuntime(NAME)
    es = AsyncElasticsearch(common.elasticsearch_url, request_timeout=30, retry_on_timeout=True)
    publisher = Publisher(common.kafka_bootstrap, client_id=NAME)
    state = {"templates": False, "kafka": False}
    workers: list[Worker] = []

    async def start_backbone(stop: asyncio.Event) -> None:
        if not await connect_backbone(
            publisher,
            bootstrap=common.kafka_bootstrap,
            partitions=common.topic_partitions,
            stop=stop,
        ):
            return
        state["kafka"] = True
        partitions = len(await publisher.partitions_for(t.METRICS_POINTS))
        if settings.run_normalizer:
            workers.append(
                Worker(
                    name="normalizer",
                    service=NAME,
                    bootstrap=common.kafka_bootstrap,
                    group_id=settings.group_id,
                    topics=[t.INGEST_RAW],
                    publisher=publisher,
                    handler=functools.partial(handlers.on_raw_events, partitions=partitions),
                    max_records=settings.max_records,
                )
            )
        if settings.run_sink:
            workers.append(
                Worker(
                    name="es-sink",
                    service=NAME,
                    bootstrap=common.kafka_bootstrap,
                    group_id=settings.sink_group_id,
                    topics=[t.METRICS_POINTS, t.LOGS_RECORDS, t.OPS_EVENTS],
                    publisher=publisher,
                    handler=functools.partial(
                        handlers.on_normalized, es=es, prefix=settings.index_prefix
                    ),
                    max_records=settings.sink_max_records,
                )
            )
        for worker in workers:
            runtime.spawn(worker.name, worker.run)

    async def install_templates(stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await store.install_templates(es, settings.index_prefix)
                state["templates"] = True
                return
            except Exception as exc:
                log.warning("waiting for Elasticsearch at %s: %s", common.elasticsearch_url, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 10)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.spawn("backbone", start_backbone)
        runtime.spawn("templates", install_templates)
        runtime.spawn("topics", topic_guard(common.kafka_bootstrap, common.topic_partitions))
        yield
        await runtime.shutdown()
        await publisher.stop()
        await es.close()

    app = FastAPI(title="opsline dataops-ingest", lifespan=lifespan)
    runtime.check("kafka", lambda: state["kafka"])
    runtime.check("elasticsearch", lambda: state["templates"])
    runtime.check("workers", lambda: bool(workers) and all(w.ready for w in workers))
    add_ops_routes(app, runtime)
    app.include_router(
        api.build_router(
            settings=settings, es=es, guard=internal_token_guard(common.internal_token)
        )
    )
    app.state.runtime = runtime
    app.state.workers = workers
    return app


def main() -> None:
    common = CommonSettings()
    settings = IngestSettings()
    setup_logging(NAME, common.log_level)
    setup_tracing(NAME)
    serve(create_app(settings, common), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
