"""gateway: the public HTTP API; identity, and the door for events from outside."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi import FastAPI

from libs import db
from libs.config import CommonSettings
from libs.events.publisher import Publisher, connect_backbone, topic_guard
from libs.events.worker import Worker
from libs.observability.logging import setup_logging
from libs.observability.tracing import setup_tracing
from libs.runtime import ServiceRuntime, add_ops_routes, serve
from services.gateway import api, catalog, dataops, service
from services.gateway import stream as live
from services.gateway.models import ApiToken
from services.gateway.settings import AdminTokenSettings, GatewaySettings

NAME = "gateway"
log = logging.getLogger(__name__)


def admin_token(admin: AdminTokenSettings) -> str | None:
    if admin.admin_token is not None:
        return admin.admin_token.get_secret_value()
    if admin.admin_token_file:
        path = Path(admin.admin_token_file)
        if path.exists():
            return path.read_text().strip() or None
    return None


def create_app(
    settings: GatewaySettings, common: CommonSettings, admin: AdminTokenSettings | None = None
) -> FastAPI:
    admin = admin or AdminTokenSettings()
    runtime = ServiceRuntime(NAME)
    engine = db.create_engine(settings.database_url or f"sqlite:///{common.home}/gateway.db")
    sessions = db.session_factory(engine)
    publisher = Publisher(common.kafka_bootstrap, client_id=NAME, linger_ms=1)
    peers = settings.peer_urls()
    state: dict[str, bool] = {"database": False, "kafka": False}
    peer_state: dict[str, bool] = dict.fromkeys(peers, False)
    http = httpx.AsyncClient(timeout=settings.upstream_timeout_s)
    hub = live.EventHub()
    tail = Worker(
        name="live-events",
        service=NAME,
        bootstrap=common.kafka_bootstrap,
        group_id=settings.stream_group_id or f"gateway-{socket.gethostname()}-{settings.port}",
        topics=live.STREAM_TOPICS,
        handler=hub.on_events,
        publisher=publisher,
        start_at="latest",
    )

    async def start_database(stop: asyncio.Event) -> None:
        if not await db.wait_for_database(engine, stop):
            return
        await db.create_tables(engine, [ApiToken])
        token = admin_token(admin)
        if token:
            from sqlmodel.ext.asyncio.session import AsyncSession

            async with AsyncSession(engine) as session:
                await service.ensure_admin_token(session=session, token=token)
        else:
            log.warning("no admin token configured (OPSLINE_ADMIN_TOKEN / _FILE)")
        state["database"] = True

    async def start_kafka(stop: asyncio.Event) -> None:
        state["kafka"] = await connect_backbone(
            publisher,
            bootstrap=common.kafka_bootstrap,
            partitions=common.topic_partitions,
            stop=stop,
        )
        if state["kafka"]:
            runtime.spawn(tail.name, tail.run)

    async def watch_peers(stop: asyncio.Event) -> None:
        while not stop.is_set():
            for name, url in peers.items():
                try:
                    response = await http.get(f"{url}/readyz", timeout=2.0)
                    ready = response.status_code == 200
                except httpx.HTTPError:
                    ready = False
                if ready != peer_state[name]:
                    log.info("peer %s is %s", name, "ready" if ready else "not ready")
                peer_state[name] = ready
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.spawn("database", start_database)
        runtime.spawn("kafka", start_kafka)
        runtime.spawn("peers", watch_peers)
        runtime.spawn("topics", topic_guard(common.kafka_bootstrap, common.topic_partitions))
        yield
        await runtime.shutdown()
        await publisher.stop()
        await http.aclose()
        await engine.dispose()

    app = FastAPI(
        title="opsline gateway",
        version="0.1.0",
        description="The public API of opsline. "
        "Every /v1 route needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    runtime.check("database", lambda: state["database"])
    runtime.check("kafka", lambda: state["kafka"])
    runtime.check("live-events", lambda: tail.ready)
    for name in peers:
        runtime.check(name, functools.partial(peer_state.__getitem__, name))
    add_ops_routes(app, runtime)
    app.include_router(api.router)
    app.include_router(catalog.router)
    app.include_router(dataops.router)
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.publisher = publisher
    app.state.http = http
    app.state.hub = hub
    app.state.token_cache = {}
    app.state.internal_headers = (
        {"Authorization": f"Bearer {common.internal_token.get_secret_value()}"}
        if common.internal_token
        else {}
    )

    return app


def main() -> None:
    common = CommonSettings()
    settings = GatewaySettings()
    setup_logging(NAME, common.log_level)
    setup_tracing(NAME)
    serve(create_app(settings, common), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
