"""Deployment state: record commands, claim work one instance at a time, announce transitions.

Every transition is written together with its `io.opsline.deploy.state_changed` event
(transactional outbox), so what others see is what the database says.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events import topics as t
from libs.events.envelope import CloudEvent
from libs.events.outbox import add_to_outbox
from libs.schemas.opsline.v1 import deploy_pb2
from services.deploy.models import ACTIVE, RETRYABLE, DeployTask, Termination, as_utc, utcnow

SOURCE = "opsline/deploy"
MAX_REASON = 4000


def announce(
    session: AsyncSession,
    task: DeployTask,
    *,
    app: str = "",
    version: str = "",
    components: list[dict[str, str]] | None = None,
) -> None:
    """Stage the state_changed event of the task as it is now."""
    change = deploy_pb2.DeploymentStateChanged(
        deployment_id=task.deployment_id,
        instance=task.instance,
        app=app,
        version=version,
        revision=task.revision,
        state=task.state,
        reason=task.reason or "",
        kind=task.kind,
    )
    for c in components if components is not None else orjson.loads(task.components):
        change.components.add(name=c["name"], state=c["state"], reason=c.get("reason", ""))
    add_to_outbox(
        session,
        topic=t.DEPLOY_EVENTS,
        key=task.instance,
        event=CloudEvent.create(
            type="io.opsline.deploy.state_changed",
            source=SOURCE,
            subject=task.deployment_id,
            data=MessageToDict(change, preserving_proto_field_name=True),
        ),
    )


def app_and_version(task: DeployTask) -> tuple[str, str]:
    request = orjson.loads(task.request)
    return request.get("app", ""), request.get("version", "")


async def record(
    session: AsyncSession, *, deployment_id: str, instance: str, kind: str, request: dict[str, Any]
) -> bool:
    """Queue a command as a CREATED task; False if this deployment id is known already."""
    if await session.get(DeployTask, deployment_id) is not None:
        return False
    task = DeployTask(
        deployment_id=deployment_id,
        instance=instance,
        kind=kind,
        request=orjson.dumps(request).decode(),
    )
    session.add(task)
    announce(session, task, app=request.get("app", ""), version=request.get("version", ""))
    return True


async def transition(
    session: AsyncSession,
    task: DeployTask,
    state: str,
    *,
    reason: str | None = None,
    components: list[dict[str, str]] | None = None,
    revision: int | None = None,
) -> None:
    task.state = state
    if reason is not None:
        task.reason = reason[:MAX_REASON]
    if components is not None:
        task.components = orjson.dumps(components).decode()
    if revision is not None:
        task.revision = revision
    task.updated_at = utcnow()
    session.add(task)
    app, version = app_and_version(task)
    announce(session, task, app=app, version=version)


async def retry(session: AsyncSession, *, deployment_id: str) -> str:
    """Queue a WAIT_FOR_OP or FAILURE deployment again; the reason it cannot be, or ""."""
    task = await session.get(DeployTask, deployment_id)
    if task is None:
        return f"no deployment {deployment_id}"
    if task.state not in RETRYABLE:
        return f"deployment {deployment_id} is {task.state}; only WAIT_FOR_OP or FAILURE retry"
    task.worker, task.attempt = None, 0
    stale = await session.get(Termination, deployment_id)
    if stale is not None:  # asked to stop while it ran, but it had finished by then
        await session.delete(stale)
    await transition(session, task, "CREATED", reason="retry requested by an operator")
    return ""


async def terminate(session: AsyncSession, *, deployment_id: str) -> str:
    """Stop a deployment: at once if it waits, else its worker stops it (Termination)."""
    task = await session.get(DeployTask, deployment_id)
    if task is None:
        return f"no deployment {deployment_id}"
    if task.state in ("CREATED", "WAIT_FOR_OP"):
        reason = f"terminated by request ({task.state})"
        await transition(session, task, "TERMINATED", reason=reason)
    elif task.state in ACTIVE:
        if await session.get(Termination, deployment_id) is None:
            session.add(Termination(deployment_id=deployment_id))
    else:
        return f"deployment {deployment_id} has finished ({task.state})"
    return ""


async def terminations(session: AsyncSession) -> set[str]:
    """Deployments asked to stop that are still in progress."""
    rows = (
        await session.exec(
            select(Termination.deployment_id)
            .join(DeployTask, col(DeployTask.deployment_id) == col(Termination.deployment_id))
            .where(col(DeployTask.state).in_((*ACTIVE, "CREATED")))
        )
    ).all()
    return set(rows)


async def claim(session: AsyncSession, *, worker: str, limit: int) -> list[str]:
    """Take CREATED tasks, oldest first, at most one per instance and none for a busy one."""
    busy = set(
        (
            await session.exec(select(DeployTask.instance).where(col(DeployTask.state).in_(ACTIVE)))
        ).all()
    )
    query = (
        select(DeployTask)
        .where(DeployTask.state == "CREATED")
        .order_by(col(DeployTask.created_at), col(DeployTask.deployment_id))
        .limit(200)
    )
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True)
    taken: list[str] = []
    for task in (await session.exec(query)).all():
        if len(taken) >= limit:
            break
        if task.instance in busy:
            continue
        task.worker, task.heartbeat_at, task.attempt = worker, utcnow(), task.attempt + 1
        busy.add(task.instance)
        await _supersede(session, task)
        await transition(session, task, "PROCESSING")
        taken.append(task.deployment_id)
    return taken


async def _supersede(session: AsyncSession, task: DeployTask) -> None:
    """A deployment that waited for an operator is over once another one of its instance
    starts (a rollback, a new launch): it fails, naming its successor."""
    waiting = (
        await session.exec(
            select(DeployTask).where(
                DeployTask.instance == task.instance,
                DeployTask.state == "WAIT_FOR_OP",
                DeployTask.deployment_id != task.deployment_id,
            )
        )
    ).all()
    for old in waiting:
        await transition(
            session,
            old,
            "FAILURE",
            reason=f"{old.reason or 'waited for an operator'}; superseded by {task.kind} "
            f"{task.deployment_id}",
        )


async def heartbeat(session: AsyncSession, *, deployment_ids: list[str], worker: str) -> None:
    if deployment_ids:
        await session.exec(  # type: ignore[call-overload]
            update(DeployTask)
            .where(
                col(DeployTask.deployment_id).in_(deployment_ids), col(DeployTask.worker) == worker
            )
            .values(heartbeat_at=utcnow())
        )


async def reap(session: AsyncSession, *, timeout_s: float, max_attempts: int = 2) -> list[str]:
    """Deployments whose worker went silent: taken back once, then failed with the reason."""
    cutoff = utcnow() - timedelta(seconds=timeout_s)
    rows = (await session.exec(select(DeployTask).where(col(DeployTask.state).in_(ACTIVE)))).all()
    outcome = []
    for task in rows:
        beat = as_utc(task.heartbeat_at)
        if beat is not None and beat > cutoff:
            continue
        if task.attempt < max_attempts:
            task.worker = None
            await transition(
                session,
                task,
                "CREATED",
                reason=f"deploy worker stopped responding; attempt {task.attempt + 1}",
            )
            outcome.append(f"{task.deployment_id} resumed")
        else:
            await transition(
                session,
                task,
                "FAILURE",
                reason=f"deploy worker {task.worker} stopped responding twice",
            )
            outcome.append(f"{task.deployment_id} failed")
    return outcome


def announce_drift(
    session: AsyncSession, *, instance: str, revision: int, differences: list[str]
) -> None:
    """io.opsline.deploy.drift_detected (what differs), or drift_resolved when nothing does."""
    kind = "drift_detected" if differences else "drift_resolved"
    add_to_outbox(
        session,
        topic=t.DEPLOY_EVENTS,
        key=instance,
        event=CloudEvent.create(
            type=f"io.opsline.deploy.{kind}",
            source=SOURCE,
            subject=instance,
            data={"instance": instance, "revision": revision, "differences": differences},
        ),
    )
