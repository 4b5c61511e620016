"""Identity, roles, tokens, the audit log and the app → team projection on PostgreSQL and
MariaDB too (the servers come from tests/dbservers.py; skipped where not installed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import SQLModel, select

from libs import db
from libs.events.envelope import CloudEvent
from services.gateway import audit
from services.gateway.models import TABLES, ApiToken, AppOwner
from tests.gateway.conftest import Gateway, audit_record, running_gateway

SERVERS = {"postgresql": "postgres_server", "mariadb": "mariadb_server"}


async def _drop(url: str) -> None:
    engine = db.create_engine(url)
    objs = [m.__table__ for m in [*TABLES, ApiToken]]  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.drop_all(c, tables=objs))
    await engine.dispose()


@pytest.fixture(params=["postgresql", "mariadb"])
async def server_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gateway]:
    url = request.getfixturevalue(SERVERS[request.param]).url
    await _drop(url)  # the servers are shared with other tests
    async with running_gateway(tmp_path, url) as found:
        yield found
    await _drop(url)


async def test_roles_tokens_and_audit_on_a_server(server_gateway: Gateway) -> None:
    gw, c = server_gateway, server_gateway.client
    gw.upstream.apps.update({"shop": "a", "bank": "b"})
    maintainer = await gw.user("a", "maintainer", expires_in_s=600)
    assert [
        a["name"] for a in (await c.get("/v1/apps", headers=gw.auth(maintainer))).json()["apps"]
    ] == ["shop"]
    assert (await c.post("/v1/apps/shop/builds", headers=gw.auth(maintainer))).status_code == 200
    assert (await c.post("/v1/apps/bank/builds", headers=gw.auth(maintainer))).status_code == 404
    tokens = (await c.get("/v1/tokens", headers=gw.auth(maintainer))).json()["tokens"]
    assert tokens[0]["last_used_at"] is not None and tokens[0]["expires_at"] is not None
    assert datetime.fromisoformat(tokens[0]["expires_at"]) > datetime.now(UTC)
    await c.delete(f"/v1/tokens/{tokens[0]['id']}", headers=gw.auth(maintainer))
    assert (await c.get("/v1/whoami", headers=gw.auth(maintainer))).status_code == 401
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    records = (await c.get("/v1/audit", params={"since": since}, headers=gw.auth())).json()[
        "records"
    ]
    assert [(r["path"], r["outcome"]) for r in records[:3]] == [
        (f"/v1/tokens/{tokens[0]['id']}", "ok"),
        ("/v1/apps/bank/builds", "denied"),
        ("/v1/apps/shop/builds", "ok"),
    ]
    async with gw.sessions() as session:
        session.add(audit_record("old", timedelta(days=30)))
        await session.commit()
    assert await audit.prune(gw.sessions, days=7) == 1


async def test_app_owner_projection_is_idempotent_on_a_server(server_gateway: Gateway) -> None:
    owners = server_gateway.app.state.owners
    event = CloudEvent.create(
        type="io.opsline.app.created",
        source="appmanager",
        subject="shop",
        data={"app": "shop", "team": "a", "action": "created"},
    )

    class _Batch:
        records = [type("R", (), {"event": event})()]

    await asyncio.gather(owners.on_app_events(_Batch()), owners.on_app_events(_Batch()))
    async with server_gateway.sessions() as session:
        rows = (await session.exec(select(AppOwner))).all()
    assert [(r.app, r.team) for r in rows] == [("shop", "a")]
    assert await owners.team_of("shop") == "a"
    assert server_gateway.upstream.calls == []  # answered from the projection


async def test_a_database_away_is_a_transient_failure_not_a_dead_letter(tmp_path: Path) -> None:
    from libs.events.worker import TransientError
    from services.gateway.owners import Owners

    engine = db.create_engine(f"sqlite:///{tmp_path}/no-tables.db")  # tables never made
    owners = Owners(sessions=db.session_factory(engine), http=None, peers={}, headers={})  # type: ignore[arg-type]
    event = CloudEvent.create(
        type="io.opsline.app.created",
        source="appmanager",
        subject="x",
        data={"app": "x", "team": "a"},
    )

    class _Batch:
        records = [type("R", (), {"event": event})()]

    with pytest.raises(TransientError):
        await owners.on_app_events(_Batch())  # type: ignore[arg-type]
    await engine.dispose()
