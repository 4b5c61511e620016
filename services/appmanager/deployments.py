"""Launch, upgrade, roll back and uninstall instances: commands out, projections in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict, ParseDict
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events import topics as t
from libs.events.envelope import CloudEvent
from libs.events.outbox import add_to_outbox
from libs.schemas.opsline.v1 import deploy_pb2
from services.appmanager import launch as launches
from services.appmanager import service
from services.appmanager.models import Deployment, Instance, PackageVersion
from services.appmanager.spec import SpecError

FINAL = ("SUCCESS", "FAILURE", "TERMINATED", "ROLLED_BACK")


def _command(type_: str, subject: str, message: Any) -> CloudEvent:
    return CloudEvent.create(
        type=type_,
        source=service.SOURCE,
        subject=subject,
        data=MessageToDict(message, preserving_proto_field_name=True),
    )


async def _package(session: AsyncSession, app: str, version: str) -> PackageVersion:
    rows = (await session.exec(select(PackageVersion).where(PackageVersion.app == app))).all()
    if not rows:
        raise service.NotFound(f"app {app!r} has no package version yet: build it first")
    if version == "latest":
        return max(rows, key=lambda p: service._semver(p.version))
    for row in rows:
        if row.version == version:
            return row
    known = ", ".join(sorted((r.version for r in rows), key=service._semver))
    raise service.NotFound(f"app {app!r} has no package version {version} (it has {known})")


async def launch(session: AsyncSession, *, text: str) -> Deployment:
    """Deploy (or upgrade) an instance from a launch file."""
    spec = launches.parse(text)
    await service.get(session, name=spec.app)
    package = await _package(session, spec.app, spec.version)
    params, components = launches.render(orjson.loads(package.spec), spec)
    artifacts = {a["component"]: a for a in orjson.loads(package.artifacts)}
    missing = [c["name"] for c in components if c["name"] not in artifacts]
    if missing:
        raise SpecError([f"package {package.version} has no artifact for {', '.join(missing)}"])
    instance_id = spec.instance_id()
    instance = await session.get(Instance, instance_id)
    if instance is not None and instance.app != spec.app:
        raise service.Conflict(f"instance {instance_id!r} runs app {instance.app!r}")
    if instance is None:
        instance = Instance(
            id=instance_id,
            app=spec.app,
            cluster=spec.target.cluster,
            namespace=spec.target.namespace,
            stage=spec.target.stage,
        )
        kind = "deploy"
    elif (instance.cluster, instance.namespace) != (spec.target.cluster, spec.target.namespace):
        raise service.Conflict(
            f"instance {instance_id!r} lives in {instance.cluster}/{instance.namespace}; "
            "uninstall it first to move it"
        )
    else:
        kind = "upgrade"
    deployment = Deployment(
        id=str(uuid.uuid4()),
        instance=instance_id,
        app=spec.app,
        version=package.version,
        kind=kind,
        launch=spec.model_dump_json(),
    )
    instance.updated_at = datetime.now(UTC)
    session.add(instance)
    session.add(deployment)
    request = deploy_pb2.DeployRequested(
        deployment_id=deployment.id,
        instance=instance_id,
        app=spec.app,
        version=package.version,
        auto_rollback=spec.rollback.automatic,
        target=deploy_pb2.Target(
            cluster=spec.target.cluster, namespace=spec.target.namespace, stage=spec.target.stage
        ),
    )
    request.parameters.update(params)
    for component in components:
        release = request.components.add()
        ParseDict(
            {k: v for k, v in component.items() if k in ("name", "type", "build", "traits")}
            | {"source": {k: v for k, v in component["source"].items() if v is not None}},
            release.spec,
        )
        ParseDict(artifacts[component["name"]], release.artifact, ignore_unknown_fields=True)
    add_to_outbox(
        session,
        topic=t.DEPLOY_COMMANDS,
        key=instance_id,
        event=_command("io.opsline.deploy.requested", deployment.id, request),
    )
    await session.commit()
    return deployment


async def get_instance(session: AsyncSession, *, instance_id: str) -> Instance:
    instance = await session.get(Instance, instance_id)
    if instance is None:
        raise service.NotFound(f"no instance {instance_id!r}")
    return instance


async def _instance_command(
    session: AsyncSession, *, instance_id: str, kind: str, build: Any
) -> Deployment:
    """Record a rollback or uninstall and send its command, in one transaction."""
    instance = await get_instance(session, instance_id=instance_id)
    deployment = Deployment(id=str(uuid.uuid4()), instance=instance_id, app=instance.app, kind=kind)
    session.add(deployment)
    add_to_outbox(
        session,
        topic=t.DEPLOY_COMMANDS,
        key=instance_id,
        event=_command(f"io.opsline.deploy.{kind}_requested", deployment.id, build(deployment.id)),
    )
    await session.commit()
    return deployment


async def rollback(session: AsyncSession, *, instance_id: str, revision: int = 0) -> Deployment:
    return await _instance_command(
        session,
        instance_id=instance_id,
        kind="rollback",
        build=lambda d: deploy_pb2.RollbackRequested(
            deployment_id=d, instance=instance_id, revision=revision
        ),
    )


async def uninstall(session: AsyncSession, *, instance_id: str) -> Deployment:
    return await _instance_command(
        session,
        instance_id=instance_id,
        kind="uninstall",
        build=lambda d: deploy_pb2.UninstallRequested(deployment_id=d, instance=instance_id),
    )


async def _send(session: AsyncSession, deployment: Deployment, what: str, message: Any) -> None:
    add_to_outbox(
        session,
        topic=t.DEPLOY_COMMANDS,
        key=deployment.instance,
        event=_command(f"io.opsline.deploy.{what}_requested", deployment.id, message),
    )
    await session.commit()


async def retry(session: AsyncSession, *, deployment_id: str) -> Deployment:
    """Run a deployment that waits for an operator (or failed) again, as a new revision."""
    deployment = await get(session, deployment_id=deployment_id)
    if deployment.state not in ("WAIT_FOR_OP", "FAILURE"):
        raise service.Conflict(
            f"deployment {deployment_id} is {deployment.state}; only WAIT_FOR_OP or FAILURE "
            "can be retried"
        )
    newest = (await list_all(session, instance_id=deployment.instance))[0]
    if newest.id != deployment.id:
        raise service.Conflict(
            f"deployment {newest.id} of instance {deployment.instance} is newer; retry that "
            "one, or launch again"
        )
    message = deploy_pb2.RetryRequested(deployment_id=deployment.id, instance=deployment.instance)
    await _send(session, deployment, "retry", message)
    return deployment


async def terminate(session: AsyncSession, *, deployment_id: str) -> Deployment:
    """Stop a deployment that has not finished."""
    deployment = await get(session, deployment_id=deployment_id)
    if deployment.state in FINAL:
        raise service.Conflict(f"deployment {deployment_id} has finished ({deployment.state})")
    message = deploy_pb2.TerminateRequested(
        deployment_id=deployment.id, instance=deployment.instance
    )
    await _send(session, deployment, "terminate", message)
    return deployment


async def get(session: AsyncSession, *, deployment_id: str) -> Deployment:
    deployment = await session.get(Deployment, deployment_id)
    if deployment is None:
        raise service.NotFound(f"no deployment {deployment_id!r}")
    return deployment


async def list_all(session: AsyncSession, *, instance_id: str | None = None) -> list[Deployment]:
    query = select(Deployment)
    if instance_id:
        query = query.where(Deployment.instance == instance_id)
    rows = await session.exec(
        query.order_by(Deployment.created_at.desc(), Deployment.id)  # type: ignore[attr-defined]
    )
    return list(rows.all())


def deployment_view(d: Deployment) -> dict[str, Any]:
    return {
        "id": d.id,
        "instance": d.instance,
        "app": d.app,
        "version": d.version,
        "kind": d.kind,
        "state": d.state,
        "revision": d.revision,
        "components": orjson.loads(d.components),
        "reason": d.reason,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    }


def instance_view(i: Instance) -> dict[str, Any]:
    return {
        "id": i.id,
        "app": i.app,
        "cluster": i.cluster,
        "namespace": i.namespace,
        "stage": i.stage,
        "version": i.version,
        "revision": i.revision,
        "state": i.state,
        "last_deployment": i.last_deployment,
        "created_at": i.created_at,
        "updated_at": i.updated_at,
    }


def _aware(value: datetime) -> datetime:
    """SQLite gives naive datetimes back; they were written as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def on_deploy_event(session: AsyncSession, event: CloudEvent) -> None:
    """Fold deploy.state_changed (and drift) into the deployment and instance projections."""
    if event.type in ("io.opsline.deploy.drift_detected", "io.opsline.deploy.drift_resolved"):
        data = event.json()
        drifted = await session.get(Instance, str(data.get("instance", "")))
        if drifted is not None:
            detected = event.type.endswith("detected")
            drifted.state = "OutOfSync" if detected else "SUCCESS"
            drifted.updated_at = datetime.now(UTC)
            session.add(drifted)
        return
    if event.type != "io.opsline.deploy.state_changed":
        return
    change = ParseDict(
        event.json(), deploy_pb2.DeploymentStateChanged(), ignore_unknown_fields=True
    )
    deployment = await session.get(Deployment, change.deployment_id)
    now = datetime.now(UTC)
    if deployment is not None:
        deployment.state = change.state
        deployment.reason = change.reason or None
        deployment.revision = change.revision or deployment.revision
        deployment.version = change.version or deployment.version
        deployment.components = orjson.dumps(
            [MessageToDict(c, preserving_proto_field_name=True) for c in change.components]
        ).decode()
        deployment.updated_at = now
        session.add(deployment)
    instance = await session.get(Instance, change.instance)
    if instance is None:
        return
    last = await session.get(Deployment, instance.last_deployment or "")
    if (
        deployment is not None
        and last is not None
        and last.id != deployment.id
        and _aware(deployment.created_at) < _aware(last.created_at)
    ):
        return  # news of an older deployment (superseded): the instance follows the newest
    if change.kind == "uninstall" and change.state == "SUCCESS":
        await session.delete(instance)
        return
    instance.state = change.state
    instance.last_deployment = change.deployment_id
    if change.state in ("SUCCESS", "ROLLED_BACK"):
        instance.revision = change.revision
        instance.version = change.version
    instance.updated_at = now
    session.add(instance)
