"""Catalogue rules: apply an app idempotently, allocate versions, follow builds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict, ParseDict
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events import topics as t
from libs.events.envelope import CloudEvent
from libs.events.outbox import add_to_outbox
from libs.schemas.opsline.v1 import build_pb2, catalog_pb2
from services.appmanager import spec as specs
from services.appmanager.models import App, Build, PackageVersion

SOURCE = "opsline/appmanager"
IN_FLIGHT = ("QUEUED", "RUNNING")
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


@dataclass
class ApplyResult:
    app: str
    action: str  # created | updated | unchanged
    changes: list[dict[str, Any]] = field(default_factory=list)


def canonical(spec: specs.AppSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude={"apiVersion", "kind"})


def diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """Field-level changes between two canonical specs (lists of named items by name)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else key
            out += diff(old.get(key), new.get(key), sub)
        return out
    if _named_list(old) and _named_list(new):
        return diff({i["name"]: i for i in old}, {i["name"]: i for i in new}, path)
    if old != new:
        return [{"path": path, "old": old, "new": new}]
    return []


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value)


def _event(type_: str, subject: str, data: Any) -> CloudEvent:
    return CloudEvent.create(type=type_, source=SOURCE, subject=subject, data=data)


def _msg(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


async def apply(session: AsyncSession, *, text: str, base_dir: str | None) -> ApplyResult:
    """Create or update an app from opsline.yaml text; applying the same file is a no-op."""
    spec = specs.resolve_paths(specs.parse(text), base_dir)
    new = canonical(spec)
    app = await session.get(App, spec.meta.name)
    if app is not None and app.team != spec.meta.team:
        raise Conflict(
            f"app {spec.meta.name!r} already exists and belongs to team {app.team!r}; "
            "app names are unique across teams"
        )
    if app is None:
        app = App(
            name=spec.meta.name,
            team=spec.meta.team,
            description=spec.meta.description,
            spec=orjson.dumps(new).decode(),
        )
        session.add(app)
        result = ApplyResult(app.name, "created")
    else:
        changes = diff(orjson.loads(app.spec), new)
        if not changes:
            return ApplyResult(app.name, "unchanged")
        app.spec = orjson.dumps(new).decode()
        app.description = spec.meta.description
        app.generation += 1
        app.updated_at = datetime.now(UTC)
        session.add(app)
        result = ApplyResult(app.name, "updated", changes)
    changed = [c["path"] for c in result.changes]
    add_to_outbox(
        session,
        topic=t.APP_EVENTS,
        key=app.name,
        event=_event(
            f"io.opsline.app.{result.action}",
            app.name,
            _msg(
                catalog_pb2.AppChanged(
                    app=app.name, team=app.team, action=result.action, changed=changed
                )
            ),
        ),
    )
    await session.commit()
    return result


async def get_all(session: AsyncSession) -> list[App]:
    return list((await session.exec(select(App).order_by(App.name))).all())


async def get(session: AsyncSession, *, name: str) -> App:
    app = await session.get(App, name)
    if app is None:
        raise NotFound(f"no app named {name!r}")
    return app


def app_view(app: App) -> dict[str, Any]:
    spec = orjson.loads(app.spec)
    return {
        "name": app.name,
        "team": app.team,
        "description": app.description,
        "labels": spec["meta"].get("labels", {}),
        "generation": app.generation,
        "parameters": spec.get("parameters", []),
        "components": spec["components"],
        "created_at": app.created_at,
        "updated_at": app.updated_at,
    }


def _semver(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(p) for p in version.split("."))
    return major, minor, patch


async def _taken_versions(session: AsyncSession, app: str) -> list[str]:
    built = await session.exec(select(PackageVersion.version).where(PackageVersion.app == app))
    pending = await session.exec(
        select(Build.version).where(Build.app == app, Build.status.in_(IN_FLIGHT))  # type: ignore[attr-defined]
    )
    return [*built.all(), *pending.all()]


async def request_build(
    session: AsyncSession,
    *,
    app_name: str,
    component: str | None = None,
    version: str | None = None,
) -> Build:
    """Record a build and send build.requested in one transaction."""
    app = await get(session, name=app_name)
    spec = orjson.loads(app.spec)
    components = spec["components"]
    if component is not None:
        components = [c for c in components if c["name"] == component]
        if not components:
            names = ", ".join(c["name"] for c in spec["components"])
            raise NotFound(f"app {app_name!r} has no component {component!r} (it has {names})")
    taken = await _taken_versions(session, app_name)
    last = max(taken, key=_semver) if taken else None
    wanted = version or spec.get("build", {}).get("version")
    if wanted is not None and not specs.SEMVER.match(wanted):
        raise Conflict(f"version {wanted!r} is not MAJOR.MINOR.PATCH")
    if wanted is not None and (last is None or _semver(wanted) > _semver(last)):
        chosen = wanted
    elif version is not None:
        raise Conflict(f"version {version} must be greater than the last one, {last}")
    elif last is None:
        chosen = "0.1.0"
    else:
        major, minor, patch = _semver(last)
        chosen = f"{major}.{minor}.{patch + 1}"
    build = Build(
        id=str(uuid.uuid4()),
        app=app_name,
        version=chosen,
        components=orjson.dumps([c["name"] for c in components]).decode(),
    )
    session.add(build)
    request = build_pb2.BuildRequested(build_id=build.id, app=app_name, version=chosen)
    for c in components:
        request.components.append(
            ParseDict(
                {
                    "name": c["name"],
                    "type": c["type"],
                    "source": {k: v for k, v in c["source"].items() if v is not None},
                    "build": c.get("build", {}),
                    "traits": c.get("traits", {}),
                },
                catalog_pb2.ComponentSpec(),
            )
        )
    add_to_outbox(
        session,
        topic=t.BUILD_COMMANDS,
        key=app_name,
        event=_event("io.opsline.build.requested", build.id, _msg(request)),
    )
    await session.commit()
    return build


async def get_build(session: AsyncSession, *, build_id: str) -> Build:
    build = await session.get(Build, build_id)
    if build is None:
        raise NotFound(f"no build {build_id!r}")
    return build


async def list_builds(session: AsyncSession, *, app_name: str) -> list[Build]:
    await get(session, name=app_name)
    rows = await session.exec(
        select(Build).where(Build.app == app_name).order_by(Build.created_at.desc())  # type: ignore[attr-defined]
    )
    return list(rows.all())


def build_view(build: Build) -> dict[str, Any]:
    return {
        "id": build.id,
        "app": build.app,
        "version": build.version,
        "components": orjson.loads(build.components),
        "status": build.status,
        "steps": orjson.loads(build.steps),
        "artifacts": orjson.loads(build.artifacts),
        "reason": build.reason,
        "created_at": build.created_at,
        "updated_at": build.updated_at,
    }


async def cancel_build(session: AsyncSession, *, build_id: str) -> Build:
    build = await get_build(session, build_id=build_id)
    if build.status in FINAL:
        raise Conflict(f"build {build_id} is already {build.status}")
    add_to_outbox(
        session,
        topic=t.BUILD_COMMANDS,
        key=build.app,
        event=_event(
            "io.opsline.build.cancel_requested",
            build.id,
            _msg(build_pb2.BuildCancelRequested(build_id=build.id, app=build.app)),
        ),
    )
    await session.commit()
    return build


async def list_packages(session: AsyncSession, *, app_name: str) -> list[PackageVersion]:
    await get(session, name=app_name)
    rows = (await session.exec(select(PackageVersion).where(PackageVersion.app == app_name))).all()
    return sorted(rows, key=lambda p: _semver(p.version), reverse=True)


def package_view(package: PackageVersion) -> dict[str, Any]:
    return {
        "app": package.app,
        "version": package.version,
        "build_id": package.build_id,
        "created_at": package.created_at,
        "artifacts": orjson.loads(package.artifacts),
    }


async def on_build_event(session: AsyncSession, event: CloudEvent) -> None:
    """Fold one build.events event into the build record (caller commits)."""
    data = event.json()
    build_id = data.get("build_id") if isinstance(data, dict) else None
    build = await session.get(Build, build_id) if build_id else None
    if build is None:
        return  # a build another catalogue asked for; not ours to record
    kind = event.type.removeprefix("io.opsline.build.")
    now = datetime.now(UTC)
    if kind == "started" and build.status == "QUEUED":
        build.status = "RUNNING"
    elif kind == "step":
        step = _msg(ParseDict(data, build_pb2.BuildStep(), ignore_unknown_fields=True))
        steps = orjson.loads(build.steps)
        key = (step.get("component"), step.get("step"))
        existing = next((s for s in steps if (s.get("component"), s.get("step")) == key), None)
        entry = {
            "component": key[0],
            "step": key[1],
            "status": step.get("status", ""),
            "log": step.get("log", []),
        }
        if existing is None:
            steps.append(entry)
        else:
            existing.update(entry)
        build.steps = orjson.dumps(steps).decode()
    elif kind == "succeeded" and build.status not in FINAL:
        done = ParseDict(data, build_pb2.BuildSucceeded(), ignore_unknown_fields=True)
        artifacts = [_msg(a) for a in done.artifacts]
        build.status, build.artifacts = "SUCCEEDED", orjson.dumps(artifacts).decode()
        app = await session.get(App, build.app)
        package = PackageVersion(
            app=build.app,
            version=build.version,
            build_id=build.id,
            spec=app.spec if app else "{}",
            artifacts=build.artifacts,
        )
        session.add(package)
        created = catalog_pb2.PackageVersionCreated(
            app=build.app, version=build.version, build_id=build.id, artifacts=done.artifacts
        )
        add_to_outbox(
            session,
            topic=t.APP_EVENTS,
            key=build.app,
            event=_event("io.opsline.package.created", build.app, _msg(created)),
        )
    elif kind == "failed" and build.status not in FINAL:
        build.status, build.reason = "FAILED", str(data.get("reason") or "build failed")
    elif kind == "cancelled" and build.status not in FINAL:
        build.status = "CANCELLED"
    build.updated_at = now
    session.add(build)
