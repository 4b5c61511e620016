"""appmanager's consumer: build.events into build records and package versions."""

from __future__ import annotations

from google.protobuf import json_format
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events import topics as t
from libs.events.idempotency import mark_processed
from libs.events.worker import Batch
from services.appmanager import deployments, service

CONSUMER = "appmanager"


async def on_events(batch: Batch, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        for record in batch.records:
            event = record.event
            assert event is not None
            if not await mark_processed(session, consumer=CONSUMER, event_id=event.id):
                continue  # a redelivery
            try:
                if record.topic == t.BUILD_EVENTS and event.type.startswith("io.opsline.build."):
                    await service.on_build_event(session, event)
                elif record.topic == t.DEPLOY_EVENTS:
                    await deployments.on_deploy_event(session, event)
            except (ValueError, json_format.ParseError) as exc:  # undecodable: tell, go on
                await batch.reject(record, f"rejected: {exc}")
        await session.commit()
