"""A gateway app over a real SQLite database; the owners' internal APIs it forwards to are
answered by a small in-process stand-in (the e2e tests use the real services)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from libs import db
from libs.config import CommonSettings
from services.gateway import owners, service
from services.gateway.main import create_app
from services.gateway.models import TABLES, AuditRecord
from services.gateway.settings import AdminTokenSettings, GatewaySettings

ADMIN = "opl_test-admin-token"
PEERS = (
    "appmanager=http://appmanager,build=http://build,deploy=http://deploy,"
    "dataops-ingest=http://dataops,aiops-detector=http://detector"
)


@dataclass
class Upstream:
    """What the appmanager and dataops-ingest know, and every call the gateway made."""

    apps: dict[str, str] = field(default_factory=dict)  # app → team
    builds: dict[str, str] = field(default_factory=dict)  # id → app
    deployments: dict[str, str] = field(default_factory=dict)
    instances: dict[str, str] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    alerts: dict[str, str] = field(default_factory=dict)  # fingerprint → app
    calls: list[tuple[str, str]] = field(default_factory=list)
    KINDS = ("apps", "builds", "deployments", "instances")

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/internal/v1")
        self.calls.append((request.method, f"{request.url.host}{path}"))
        parts = path.strip("/").split("/")
        if request.method == "GET" and path == "/apps":
            apps = [{"name": a, "team": t} for a, t in sorted(self.apps.items())]
            return httpx.Response(200, json={"apps": apps})
        if request.method == "GET" and path in ("/deployments", "/instances"):
            table = self.deployments if path == "/deployments" else self.instances
            key = path.strip("/")
            return httpx.Response(200, json={key: [{"id": i, "app": a} for i, a in table.items()]})
        if request.method == "GET" and request.url.host == "detector":
            if path in ("/alerts", "/incidents"):
                items = [{"fingerprint": f, "id": f, "app": a} for f, a in self.alerts.items()]
                return httpx.Response(200, json={path.strip("/"): items})
            if path.endswith("/health"):
                return httpx.Response(200, json={"app": parts[1], "score": 100})
            if parts[-1] in self.alerts:
                return httpx.Response(
                    200, json={"fingerprint": parts[-1], "app": self.alerts[parts[-1]]}
                )
            return httpx.Response(404, json={"detail": "not found"})
        if request.method == "GET" and path == "/scrape/targets":
            items = [{"id": i, "app": a} for i, a in self.targets.items()]
            return httpx.Response(200, json={"targets": items, "total": len(items)})
        if request.method == "GET" and len(parts) == 2 and parts[0] in self.KINDS:
            table = {
                "apps": {a: {"name": a, "team": t, "app": a} for a, t in self.apps.items()},
                "builds": {i: {"id": i, "app": a} for i, a in self.builds.items()},
                "deployments": {i: {"id": i, "app": a} for i, a in self.deployments.items()},
                "instances": {i: {"id": i, "app": a} for i, a in self.instances.items()},
            }[parts[0]]
            if parts[1] in table:
                return httpx.Response(200, json=table[parts[1]])
            return httpx.Response(404, json={"detail": "not found"})
        if request.method == "GET" and path.startswith("/scrape/targets/"):
            ident = parts[-1]
            if ident in self.targets:
                return httpx.Response(200, json={"id": ident, "app": self.targets[ident]})
            return httpx.Response(404, json={"detail": "not found"})
        return httpx.Response(200, json={"ok": True, "path": path})


def audit_record(request_id: str, age: timedelta = timedelta(0)) -> AuditRecord:
    """A record of a POST that happened `age` ago (for retention tests)."""
    return AuditRecord(
        ts=datetime.now(UTC) - age,
        request_id=request_id,
        method="POST",
        path="/v1/x",
        status=200,
        outcome="ok",
        duration_ms=1,
    )


@dataclass
class Gateway:
    app: FastAPI
    client: httpx.AsyncClient
    upstream: Upstream
    sessions: Any

    def auth(self, token: str = ADMIN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def user(self, team: str | None = None, role: str = "viewer", **token: Any) -> str:
        """A new user (in the team with the role, if given) and a token of theirs."""
        name = f"u-{uuid.uuid4().hex[:8]}"
        r = await self.client.post("/v1/users", json={"name": name}, headers=self.auth())
        assert r.status_code == 201, r.text
        if team is not None:
            await self.team(team)
            r = await self.client.put(
                f"/v1/teams/{team}/members/{name}", json={"role": role}, headers=self.auth()
            )
            assert r.status_code == 200, r.text
        r = await self.client.post(
            f"/v1/users/{name}/tokens", json={"name": "t", **token}, headers=self.auth()
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    async def team(self, name: str) -> None:
        r = await self.client.post("/v1/teams", json={"name": name}, headers=self.auth())
        assert r.status_code in (201, 409), r.text


def make_app(home: Path, **settings: Any) -> FastAPI:
    return create_app(
        GatewaySettings(peers=PEERS, **settings),
        CommonSettings(home=home),
        AdminTokenSettings(admin_token=ADMIN),
    )


@contextlib.asynccontextmanager
async def running_gateway(home: Path, database_url: str) -> AsyncIterator[Gateway]:
    """The gateway app over that database, its tables made, the stand-in owners wired in."""
    app = make_app(home, rate_limit_per_s=1000.0, rate_limit_burst=1000)
    engine = db.create_engine(database_url)
    await db.create_tables(engine, TABLES)
    sessions = db.session_factory(engine)
    async with sessions() as session:
        await service.ensure_admin_token(session=session, token=ADMIN)
    upstream = Upstream()
    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream.handle))
    app.state.sessions = sessions
    app.state.http = http
    app.state.owners = owners.Owners(
        sessions=sessions, http=http, peers=app.state.settings.peer_urls(), headers={}
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield Gateway(app, client, upstream, sessions)
    finally:
        await http.aclose()
        await engine.dispose()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path, f"sqlite:///{tmp_path}/gateway-test.db") as found:
        yield found
