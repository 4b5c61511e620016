"""The alert manager and the HTTP API, served inside the faust worker (one loop, one process).

The manager is an aiokafka consumer group of its own over `aiops.signals` and
`deploy.events`; it owns alerts, incidents, silences, rules and receivers in a database
and announces lifecycle changes on `alert.events` through the outbox. It also reloads
the rules the stream evaluates, sends due notifications and closes quiet incidents.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.config import CommonSettings
from libs.events import topics as t
from libs.events.worker import Batch
from libs.internal import internal_token_guard
from libs.member import create_member_app
from services.aiops_detector import api, handlers, lifecycle, notify, service
from services.aiops_detector.app import NAME, Rules
from services.aiops_detector.models import TABLES
from services.aiops_detector.rules import RuleSet
from services.aiops_detector.settings import DetectorSettings


async def reload_rules(sessions: async_sessionmaker[AsyncSession], rules: Rules) -> None:
    async with sessions() as session:
        rules.replace(RuleSet(await service.list_rules(session=session)))


def create_api(
    settings: DetectorSettings,
    common: CommonSettings,
    *,
    rules: Rules,
    stream_ready: Any = lambda: True,
    stream: api.StreamView | None = None,
) -> FastAPI:
    http = httpx.AsyncClient(follow_redirects=False)
    timing = lifecycle.Timing(
        correlation_window_ms=int(settings.correlation_window_s * 1000),
        incident_close_after_ms=int(settings.incident_close_after_s * 1000),
    )
    holder: dict[str, FastAPI] = {}

    def wake() -> None:
        holder["app"].state.relay.wake()

    async def handle(batch: Batch, sessions: async_sessionmaker[AsyncSession]) -> None:
        await handlers.on_records(batch, sessions, timing=timing, wake=wake)

    async def close_incidents(session: AsyncSession, at_ms: int) -> None:
        if await lifecycle.close_quiet_incidents(session, now_ms=at_ms, timing=timing):
            wake()

    async def refresh_rules(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await reload_rules(holder["app"].state.sessions, rules)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.rules_refresh_s)

    async def send_notifications(stop: asyncio.Event) -> None:
        notifier = notify.Notifier(
            sessions=holder["app"].state.sessions,
            http=http,
            tick_s=settings.notify_tick_s,
            on_tick=close_incidents,
        )
        await notifier.run(stop)

    app = create_member_app(
        name=NAME,
        common=common,
        database_url=settings.database_url,
        group_id=settings.group_id,
        topics=[t.AIOPS_SIGNALS, t.DEPLOY_EVENTS],
        handler=handle,
        tables=TABLES,
        background=[("rules", refresh_rules), ("notifier", send_notifications)],
        on_shutdown=http.aclose,
    )
    holder["app"] = app
    runtime = app.state.runtime
    runtime.check("detector", stream_ready)
    runtime.check("rules", lambda: rules.loaded)
    app.include_router(
        api.build_router(
            guard=internal_token_guard(common.internal_token),
            settings=settings,
            on_rules_changed=functools.partial(reload_rules, app.state.sessions, rules),
            stream=stream,
        )
    )
    app.state.rules = rules
    return app
