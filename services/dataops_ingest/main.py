"""dataops-ingest: normalizes what tools publish and writes it to Elasticsearch."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from elasticsearch import AsyncElasticsearch
from fastapi import FastAPI

from libs import db
from libs.config import CommonSettings
from libs.events import topics as t
from libs.events.publisher import Publisher, connect_backbone, topic_guard
from libs.events.worker import Worker
from libs.internal import internal_token_guard
from libs.observability.logging import setup_logging
from libs.observability.tracing import setup_tracing
from libs.runtime import ServiceRuntime, add_ops_routes, serve
from services.dataops_ingest import api, discovery, handlers, scrape, store, timeline
from services.dataops_ingest.models import TABLES
from services.dataops_ingest.settings import IngestSettings

NAME = "dataops-ingest"
log = logging.getLogger(__name__)


def create_app(settings: IngestSettings, common: CommonSettings) -> FastAPI:
    runtime = ServiceRuntime(NAME)
    es = AsyncElasticsearch(common.elasticsearch_url, request_timeout=30, retry_on_timeout=True)
    publisher = Publisher(common.kafka_bootstrap, client_id=NAME)
    engine = db.create_engine(settings.database_url or f"sqlite:///{common.home}/{NAME}.db")
    sessions = db.session_factory(engine)
    state = {"templates": False, "kafka": False, "database": False}
    database_ready = asyncio.Event()
    workers: list[Worker] = []
    partitions = {t.INGEST_RAW: 1, t.METRICS_POINTS: 1}

    def held() -> set[int]:
        """The ingest.raw partitions this replica's normalizer holds (its scrape shards)."""
        return {tp.partition for w in workers[:1] for tp in w.assignment()}

    scraper = scrape.Scraper(
        sessions=sessions,
        publisher=publisher,
        held=held,
        shard_partitions=lambda: partitions[t.INGEST_RAW],
        point_partitions=lambda: partitions[t.METRICS_POINTS],
        max_bytes=settings.scrape_max_bytes,
        concurrency=settings.scrape_concurrency,
        flush_s=settings.scrape_status_flush_s,
    )

    async def start_backbone(stop: asyncio.Event) -> None:
        if not await connect_backbone(
            publisher,
            bootstrap=common.kafka_bootstrap,
            partitions=common.topic_partitions,
            stop=stop,
        ):
            return
        state["kafka"] = True
        for topic in partitions:
            partitions[topic] = len(await publisher.partitions_for(topic))
        if settings.run_normalizer:
            workers.append(
                Worker(
                    name="normalizer",
                    service=NAME,
                    bootstrap=common.kafka_bootstrap,
                    group_id=settings.group_id,
                    topics=[t.INGEST_RAW],
                    publisher=publisher,
                    handler=functools.partial(
                        handlers.on_raw_events, partitions=partitions[t.METRICS_POINTS]
                    ),
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
                    topics=[t.METRICS_POINTS, t.LOGS_RECORDS, t.OPS_EVENTS, *timeline.TOPICS],
                    publisher=publisher,
                    handler=functools.partial(
                        handlers.on_normalized, es=es, prefix=settings.index_prefix
                    ),
                    max_records=settings.sink_max_records,
                )
            )
        for worker in workers:
            runtime.spawn(worker.name, worker.run)
        if settings.run_scraper:
            if settings.run_normalizer:
                runtime.spawn("scraper", run_scraper)
            else:
                log.warning("scraper off: it shards by the normalizer's partitions")

    async def run_scraper(stop: asyncio.Event) -> None:
        while not database_ready.is_set():  # the targets table exists from then on
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            if stop.is_set():
                return
        await scraper.run(stop)

    async def start_database(stop: asyncio.Event) -> None:
        if not await db.wait_for_database(engine, stop):
            return
        await db.create_tables(engine, TABLES)
        state["database"] = True
        database_ready.set()
        source = discovery.discovery_source(settings.discovery_kubeconfig)
        if source is None:
            log.info("kubernetes discovery off (no kubeconfig, not in a cluster)")
            return
        pods = discovery.PodDiscovery(
            sessions=sessions,
            source=source,
            namespaces=[n.strip() for n in settings.discovery_namespaces.split(",") if n.strip()],
            leader=lambda: 0 in held(),
            default_interval_s=settings.discovery_interval_s,
            default_timeout_s=settings.discovery_timeout_s,
        )
        app.state.discovery = pods
        runtime.spawn("discovery", pods.run)

    async def install_templates(stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                policy = await _retention(es, settings)
                await store.install_templates(es, settings.index_prefix, lifecycle=policy)
                state["templates"] = True
                if settings.retention_days > 0 and policy is None:
                    runtime.spawn("retention", functools.partial(_expire, es, settings))
                return
            except Exception as exc:
                log.warning("waiting for Elasticsearch at %s: %s", common.elasticsearch_url, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 10)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.spawn("database", start_database)
        runtime.spawn("backbone", start_backbone)
        runtime.spawn("templates", install_templates)
        runtime.spawn("topics", topic_guard(common.kafka_bootstrap, common.topic_partitions))
        yield
        await runtime.shutdown()
        await publisher.stop()
        await es.close()
        await engine.dispose()

    app = FastAPI(title="opsline dataops-ingest", lifespan=lifespan)
    runtime.check("kafka", lambda: state["kafka"])
    runtime.check("database", lambda: state["database"])
    runtime.check("elasticsearch", lambda: state["templates"])
    runtime.check("workers", lambda: bool(workers) and all(w.ready for w in workers))
    add_ops_routes(app, runtime)
    app.include_router(
        api.build_router(
            settings=settings,
            es=es,
            guard=internal_token_guard(common.internal_token),
        )
    )
    app.state.runtime = runtime
    app.state.workers = workers
    app.state.scraper = scraper
    app.state.sessions = sessions
    app.state.discovery = None
    return app


async def _retention(es: AsyncElasticsearch, settings: IngestSettings) -> str | None:
    """The ILM policy new indices follow, or None (no retention, or a store without ILM)."""
    days = settings.retention_days
    if days <= 0:
        log.info("retention: off (OPSLINE_DATAOPS_INGEST_RETENTION_DAYS=0), indices are kept")
        return None
    policy = store.policy_name(settings.index_prefix)
    if await store.install_ilm_policy(es, settings.index_prefix, days):
        log.info("retention: ILM policy %s, %d days", policy, days)
        return policy
    log.info(
        "retention: the store has no ILM; a task deletes monthly indices older than %d days "
        "every %.0f s",
        days,
        settings.retention_check_s,
    )
    return None


async def _expire(es: AsyncElasticsearch, settings: IngestSettings, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await store.delete_expired(
                es, prefix=settings.index_prefix, days=settings.retention_days
            )
        except store.StoreUnavailable as exc:
            log.warning("retention: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.retention_check_s)


def main() -> None:
    common = CommonSettings()
    settings = IngestSettings()
    setup_logging(NAME, common.log_level)
    setup_tracing(NAME)
    serve(create_app(settings, common), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
