"""deploy: deployments, revisions and the live state of instances (local runtime)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.config import CommonSettings
from libs.events import topics as t
from libs.events.worker import Batch
from libs.internal import internal_token_guard
from libs.member import create_member_app
from libs.observability.logging import setup_logging
from libs.observability.tracing import setup_tracing
from libs.runtime import serve
from services.deploy import api, clusters, handlers
from services.deploy.local_runtime import LocalRuntime
from services.deploy.logship import LogShipper
from services.deploy.models import TABLES
from services.deploy.runner import Runner
from services.deploy.settings import DeploySettings

NAME = "deploy"


def create_app(settings: DeploySettings, common: CommonSettings) -> FastAPI:
    runtime = LocalRuntime(Path(settings.runtime_dir or common.home / "runtime").resolve())
    holder: dict[str, Runner] = {}
    sealer = clusters.Sealer(
        settings.secret_key.get_secret_value() if settings.secret_key else None,
        Path(settings.secret_key_file or common.home / "deploy-secret.key").resolve(),
    )

    async def on_commands(batch: Batch, sessions: async_sessionmaker[AsyncSession]) -> None:
        await handlers.on_commands(batch, sessions, poke=lambda: holder["runner"].poke())

    async def run_runner(stop: asyncio.Event) -> None:
        await holder["runner"].run(stop)

    shipper = LogShipper()
    runtime.on_line = shipper.add

    async def ship_logs(stop: asyncio.Event) -> None:
        await shipper.run(app.state.publisher, stop)

    app = create_member_app(
        name=NAME,
        common=common,
        database_url=settings.database_url,
        group_id=settings.group_id,
        topics=[t.DEPLOY_COMMANDS],
        handler=on_commands,
        tables=[*TABLES, clusters.Cluster],
        background=[("runner", run_runner), ("logs", ship_logs)],
        on_shutdown=runtime.close,
    )
    runner = Runner(
        sessions=app.state.sessions,
        runtime=runtime,
        sealer=sealer,
        worker=settings.worker_id or f"{socket.gethostname()}-{os.getpid()}",
        max_parallel=settings.max_parallel,
        heartbeat_s=settings.heartbeat_s,
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
        ready_timeout_s=settings.ready_timeout_s,
        drift_interval_s=settings.drift_interval_s,
        wake=app.state.relay.wake,
    )
    holder["runner"] = runner
    app.include_router(api.build_router(guard=internal_token_guard(common.internal_token)))
    app.state.sealer = sealer
    app.state.local_runtime = runtime
    return app


def main() -> None:
    common = CommonSettings()
    settings = DeploySettings()
    setup_logging(NAME, common.log_level)
    setup_tracing(NAME)
    serve(create_app(settings, common), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
