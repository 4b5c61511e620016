"""The catalogue on SQLite, PostgreSQL and MariaDB: migrations, apply, versions, builds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from libs import db
from libs.db.migrate import upgrade
from libs.events.envelope import CloudEvent
from libs.events.outbox import OutboxMessage
from services.appmanager import service
from services.appmanager.main import MIGRATIONS
from services.appmanager.models import Build, PackageVersion
from services.appmanager.spec import SpecError

BACKENDS = ["sqlite", "postgresql", "mariadb"]
SERVERS = {"postgresql": "postgres_server", "mariadb": "mariadb_server"}
OWN_TABLES = [
    "apps",
    "builds",
    "package_versions",
    "deployments",
    "instances",
    "outbox",
    "processed_events",
    "alembic_version",
]

SPEC = """\
apiVersion: opsline.io/v1
kind: App
meta:
  name: shop
  team: retail
  description: the shop
  labels: {tier: web}
parameters:
  - name: port
    default: 8000
components:
  - name: web
    type: process
    source:
      dir: ./web
    traits:
      replicas: 1
  - name: worker
    type: process
    source:
      dir: ./worker
"""


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/appmanager.db"
    else:
        url = request.getfixturevalue(SERVERS[request.param]).url
    engine = db.create_engine(url)
    async with engine.begin() as conn:
        for table in OWN_TABLES:
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    await upgrade(engine, MIGRATIONS, lock="opsline-appmanager-test")
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine):  # type: ignore[no-untyped-def]
    return db.session_factory(engine)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    for name in ("web", "worker"):
        (tmp_path / "app" / name).mkdir(parents=True)
        (tmp_path / "app" / name / "main.py").write_text("print('hi')\n")
    return tmp_path / "app"


async def _outbox(sessions, topic: str | None = None) -> list[tuple[str, str, dict]]:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    out = []
    for row in rows:
        headers = dict(orjson.loads(row.headers))
        if topic is None or row.topic == topic:
            out.append((row.topic, headers["ce_type"], orjson.loads(row.value)))
    return out


async def test_migrations_create_the_schema_and_run_again_as_a_no_op(engine: AsyncEngine) -> None:
    await upgrade(engine, MIGRATIONS, lock="opsline-appmanager-test")
    async with engine.connect() as conn:
        names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert {"apps", "builds", "package_versions", "outbox", "processed_events"} <= names
    assert version == "0002"


async def test_apply_creates_then_is_idempotent_then_updates_with_a_diff(sessions, src) -> None:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        first = await service.apply(session, text=SPEC, base_dir=str(src))
    assert (first.app, first.action, first.changes) == ("shop", "created", [])
    async with sessions() as session:
        again = await service.apply(session, text=SPEC, base_dir=str(src))
    assert again.action == "unchanged"
    changed = SPEC.replace("replicas: 1", "replicas: 3").replace("the shop", "our shop")
    async with sessions() as session:
        updated = await service.apply(session, text=changed, base_dir=str(src))
    assert updated.action == "updated"
    assert {(c["path"], c["old"], c["new"]) for c in updated.changes} == {
        ("components.web.traits.replicas", 1, 3),
        ("meta.description", "the shop", "our shop"),
    }
    events = await _outbox(sessions, "app.events")
    assert [e[1] for e in events] == ["io.opsline.app.created", "io.opsline.app.updated"]
    assert sorted(events[1][2]["changed"]) == ["components.web.traits.replicas", "meta.description"]
    async with sessions() as session:
        app = await service.get(session, name="shop")
        view = service.app_view(app)
    assert view["generation"] == 2
    assert view["components"][0]["source"]["dir"] == str(src / "web")


async def test_an_app_name_belongs_to_one_team(sessions, src) -> None:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        await service.apply(session, text=SPEC, base_dir=str(src))
    with pytest.raises(service.Conflict, match="belongs to team 'retail'"):
        async with sessions() as session:
            await service.apply(
                session, text=SPEC.replace("team: retail", "team: other"), base_dir=str(src)
            )


async def test_bad_files_name_the_line_and_field(sessions, src) -> None:  # type: ignore[no-untyped-def]
    bad_type = SPEC.replace("type: process", "type: lambda", 1)
    with pytest.raises(SpecError) as info:
        async with sessions() as session:
            await service.apply(session, text=bad_type, base_dir=str(src))
    assert info.value.errors == [
        "line 13, column 5: components[0].type: Input should be 'microservice', 'helm', "
        "'job' or 'process'"
    ]
    with pytest.raises(SpecError) as info:
        async with sessions() as session:
            await service.apply(
                session, text=SPEC.replace("./worker", "./nowhere"), base_dir=str(src)
            )
    assert info.value.errors == [
        f"components[1].source.dir: directory {src / 'nowhere'} does not exist"
    ]
    with pytest.raises(SpecError, match=r"line 2, column 5: invalid YAML: expected .,. or .\]."):
        async with sessions() as session:
            await service.apply(session, text="apiVersion: [\nkind", base_dir=str(src))


async def test_versions_next_patch_explicit_must_grow(sessions, src) -> None:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        await service.apply(session, text=SPEC, base_dir=str(src))
    async with sessions() as session:
        first = await service.request_build(session, app_name="shop")
        second = await service.request_build(session, app_name="shop", component="web")
        third = await service.request_build(session, app_name="shop", version="2.0.0")
    assert (first.version, second.version, third.version) == ("0.1.0", "0.1.1", "2.0.0")
    with pytest.raises(service.Conflict, match=r"must be greater than the last one, 2\.0\.0"):
        async with sessions() as session:
            await service.request_build(session, app_name="shop", version="1.9.9")
    with pytest.raises(service.NotFound, match="has no component 'db'"):
        async with sessions() as session:
            await service.request_build(session, app_name="shop", component="db")
    commands = await _outbox(sessions, "build.commands")
    assert [c[1] for c in commands] == ["io.opsline.build.requested"] * 3
    requested = commands[1][2]
    assert requested["build_id"] == second.id and requested["version"] == "0.1.1"
    assert requested["components"] == [
        {
            "name": "web",
            "type": "process",
            "source": {"dir": str(src / "web")},
            "traits": {"replicas": 1.0},
        }
    ]


def _build_event(kind: str, build: Build, **data: object) -> CloudEvent:
    return CloudEvent.create(
        type=f"io.opsline.build.{kind}",
        source="opsline/build",
        subject=build.id,
        data={"build_id": build.id, "app": build.app, **data},
    )


async def test_build_events_make_a_package_version(sessions, src) -> None:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        await service.apply(session, text=SPEC, base_dir=str(src))
        build = await service.request_build(session, app_name="shop")
    artifacts = [
        {
            "component": "web",
            "kind": "tar.gz",
            "uri": "file:///a/web.tgz",
            "digest": "sha256:" + "a" * 64,
            "size": "123",
        }
    ]
    events = [
        _build_event("started", build, worker="w1", attempt=1),
        _build_event("step", build, component="web", step="pack", status="running"),
        _build_event(
            "step", build, component="web", step="pack", status="succeeded", log=["packed 1 file"]
        ),
        _build_event("succeeded", build, version=build.version, artifacts=artifacts),
        _build_event("failed", build, reason="late and ignored"),
    ]
    for event in events:
        async with sessions() as session:
            await service.on_build_event(session, event)
            await session.commit()
    async with sessions() as session:
        view = service.build_view(await service.get_build(session, build_id=build.id))
        packages = await service.list_packages(session, app_name="shop")
    assert view["status"] == "SUCCEEDED" and view["reason"] is None
    assert view["steps"] == [
        {"component": "web", "step": "pack", "status": "succeeded", "log": ["packed 1 file"]}
    ]
    assert [(p.version, p.build_id) for p in packages] == [("0.1.0", build.id)]
    assert orjson.loads(packages[0].artifacts)[0]["digest"] == "sha256:" + "a" * 64
    created = await _outbox(sessions, "app.events")
    assert created[-1][1] == "io.opsline.package.created"
    assert created[-1][2]["version"] == "0.1.0"
    # a failed build frees its version for the next one
    async with sessions() as session:
        nxt = await service.request_build(session, app_name="shop")
    async with sessions() as session:
        await service.on_build_event(session, _build_event("failed", nxt, reason="boom"))
        await session.commit()
    async with sessions() as session:
        failed = await service.get_build(session, build_id=nxt.id)
        again = await service.request_build(session, app_name="shop")
        rows = (await session.exec(select(PackageVersion))).all()
    assert (failed.status, failed.reason) == ("FAILED", "boom")
    assert again.version == "0.1.1" and len(rows) == 1
