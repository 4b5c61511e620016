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
from fastapi import Depends, FastAPI

from libs import db
from libs.config import CommonSettings
from libs.events import topics as t
from libs.events.publisher import Publisher, connect_backbone, topic_guard
from libs.events.worker import Worker
from libs.observability.logging import setup_logging
from libs.observability.tracing import setup_tracing
from libs.runtime import ServiceRuntime, add_ops_routes, serve
from services.gateway import (
    access,
    alerts,
    api,
    audit,
    catalog,
    console,
    dataops,
    identity,
    limits,
    openapi,
    owners,
    service,
)
from services.gateway import stream as live
from services.gateway.models import TABLES
from services.gateway.oidc import OidcVerifier
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
    hub = live.EventHub(settings.stream_ring_size)
    internal_headers = (
        {"Authorization": f"Bearer {common.internal_token.get_secret_value()}"}
        if common.internal_token
        else {}
    )
    app_owners = owners.Owners(sessions=sessions, http=http, peers=peers, headers=internal_headers)
    owners_tail = Worker(
        name="app-owners",
        service=NAME,
        bootstrap=common.kafka_bootstrap,
        group_id=settings.owners_group_id,
        topics=[t.APP_EVENTS],
        handler=app_owners.on_app_events,
        publisher=publisher,
        start_at="earliest",
    )
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
        await db.create_tables(engine, TABLES)
        token = admin_token(admin)
        async with sessions() as session:
            if token:
                await service.ensure_admin_token(session=session, token=token)
            else:
                log.warning("no admin token configured (OPSLINE_ADMIN_TOKEN / _FILE)")
            copied = await service.carry_over_legacy_tokens(engine, session=session)
        if copied:
            log.info("%d tokens of the old api_tokens table now belong to the admin", copied)
        state["database"] = True

    async def fold_app_owners(stop: asyncio.Event) -> None:
        """The app → team projection needs both the database and Kafka."""
        while not (state["database"] and state["kafka"]):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            if stop.is_set():
                return
        await owners_tail.run(stop)

    async def prune_audit(stop: asyncio.Event) -> None:
        while not stop.is_set():
            if state["database"] and settings.audit_retention_days > 0:
                try:
                    gone = await audit.prune(sessions, days=settings.audit_retention_days)
                    if gone:
                        log.info("audit: %d records past retention deleted", gone)
                except Exception as exc:
                    log.warning("audit retention: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 3600.0)

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
        runtime.spawn("app-owners", fold_app_owners)
        runtime.spawn("audit-retention", prune_audit)
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
        # every route: /v1 ones by their policy (services/gateway/policies.py), others pass
        dependencies=[Depends(access.authorize)],
    )
    runtime.check("database", lambda: state["database"])
    runtime.check("kafka", lambda: state["kafka"])
    runtime.check("live-events", lambda: tail.ready)
    for name in peers:
        runtime.check(name, functools.partial(peer_state.__getitem__, name))
    add_ops_routes(app, runtime)
    app.add_middleware(limits.BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(audit.AuditMiddleware, sessions=lambda: app.state.sessions)
    app.include_router(identity.router)
    app.include_router(audit.router)
    app.include_router(api.router)
    app.include_router(catalog.router)
    app.include_router(dataops.router)
    app.include_router(alerts.router)
    console.mount(app)  # the web console's static files: no token (the API calls carry it)
    openapi.describe(app)  # the bearer token and our error details in /openapi.json
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.publisher = publisher
    app.state.http = http
    app.state.hub = hub
    app.state.token_cache = {}
    app.state.internal_headers = internal_headers
    app.state.owners = app_owners
    app.state.limiter = limits.RateLimiter()
    app.state.oidc = (
        OidcVerifier(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            username_claim=settings.oidc_username_claim,
            algorithms=frozenset(a.strip() for a in settings.oidc_algorithms.split(",")),
            http=http,
            jwks_url=settings.oidc_jwks_url,
        )
        if settings.oidc_issuer
        else None
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
