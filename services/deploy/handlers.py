"""deploy's consumer: deploy.commands become queued deployments (once per deployment id),
and retries and terminations of deployments already known."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events.idempotency import mark_processed
from libs.events.worker import Batch
from libs.schemas.opsline.v1 import deploy_pb2
from services.deploy import service

KINDS: dict[str, tuple[str, Any]] = {
    "io.opsline.deploy.requested": ("deploy", deploy_pb2.DeployRequested),
    "io.opsline.deploy.rollback_requested": ("rollback", deploy_pb2.RollbackRequested),
    "io.opsline.deploy.uninstall_requested": ("uninstall", deploy_pb2.UninstallRequested),
    "io.opsline.deploy.retry_requested": ("retry", deploy_pb2.RetryRequested),
    "io.opsline.deploy.terminate_requested": ("terminate", deploy_pb2.TerminateRequested),
}
CONSUMER = "deploy-commands"


async def on_commands(
    batch: Batch, sessions: async_sessionmaker[AsyncSession], *, poke: Callable[[], None]
) -> None:
    new = 0
    async with sessions() as session:
        for record in batch.records:
            event = record.event
            assert event is not None
            if event.type not in KINDS:
                await batch.reject(record, f"rejected: unknown command type {event.type!r}")
                continue
            kind, message_type = KINDS[event.type]
            try:
                message = json_format.ParseDict(event.json(), message_type())
            except (ValueError, json_format.ParseError) as exc:
                await batch.reject(record, f"rejected: {exc}")
                continue
            if not message.deployment_id or not message.instance:
                await batch.reject(record, "rejected: deployment_id and instance are required")
                continue
            if kind == "deploy" and not message.components:
                await batch.reject(record, "rejected: a deployment needs components")
                continue
            if kind in ("retry", "terminate"):
                if not await mark_processed(session, consumer=CONSUMER, event_id=event.id):
                    continue  # redelivered: it was acted on once
                act = service.retry if kind == "retry" else service.terminate
                refused = await act(session, deployment_id=message.deployment_id)
                if refused:
                    await batch.reject(record, f"rejected: {refused}")
                new += not refused
                continue
            request = json_format.MessageToDict(message, preserving_proto_field_name=True)
            new += await service.record(
                session,
                deployment_id=message.deployment_id,
                instance=message.instance,
                kind=kind,
                request=request,
            )
        await session.commit()
    if new:
        poke()
