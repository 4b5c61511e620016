"""The scrape target API of dataops-ingest (internal token, SQLite), and discovery's rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from elasticsearch import AsyncElasticsearch
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from libs import db
from libs.internal import internal_token_guard
from services.dataops_ingest import api, targets
from services.dataops_ingest.models import TABLES, ScrapeTargetCreate
from services.dataops_ingest.settings import IngestSettings

TOKEN = "internal-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


SERVER_FIXTURES = {"postgresql": "postgres_server", "mariadb": "mariadb_server"}


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ingest.db"
    return str(request.getfixturevalue(SERVER_FIXTURES[request.param]).url)


async def _drop(engine: AsyncEngine) -> None:
    objs = [m.__table__ for m in TABLES]  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.drop_all(c, tables=objs))


@pytest.fixture
async def setup(db_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """The target API on SQLite, PostgreSQL and MariaDB (shared servers: tables dropped)."""
    engine = db.create_engine(db_url)
    await _drop(engine)
    await db.create_tables(engine, TABLES)
    sessions = db.session_factory(engine)
    es = AsyncElasticsearch("http://127.0.0.1:9")  # the target routes never touch it
    app = FastAPI()
    app.include_router(
        api.build_router(
            settings=IngestSettings(),
            es=es,
            guard=internal_token_guard(SecretStr(TOKEN)),
        )
    )
    app.state.sessions = sessions
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        yield client, sessions
    await es.close()
    await _drop(engine)
    await engine.dispose()


async def test_create_list_get_update_delete(setup: tuple[httpx.AsyncClient, object]) -> None:
    client, _ = setup
    body = {
        "job": "node",
        "url": "http://10.0.0.5:9100",
        "interval_s": 30,
        "timeout_s": 5,
        "labels": {"env": "prod"},
        "app": "shop",
    }
    r = await client.post("/internal/v1/scrape/targets", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["url"] == "http://10.0.0.5:9100/metrics"
    assert created["instance"] == "10.0.0.5:9100"
    assert (created["health"], created["last_error"], created["source"]) == ("unknown", None, "api")

    again = await client.post("/internal/v1/scrape/targets", json=body, headers=AUTH)
    assert again.status_code == 409 and "exists" in again.json()["detail"]

    r = await client.get("/internal/v1/scrape/targets", params={"app": "shop"}, headers=AUTH)
    assert [t["id"] for t in r.json()["targets"]] == [created["id"]]
    path = f"/internal/v1/scrape/targets/{created['id']}"
    r = await client.patch(path, json={"interval_s": 10, "labels": {"env": "dev"}}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert (r.json()["interval_s"], r.json()["labels"]) == (10, {"env": "dev"})
    r = await client.patch(path, json={"timeout_s": 20}, headers=AUTH)
    assert r.status_code == 422 and "less than interval_s" in r.json()["detail"]
    assert (await client.get(path, headers=AUTH)).json()["timeout_s"] == 5

    assert (await client.delete(path, headers=AUTH)).status_code == 204
    assert (await client.get(path, headers=AUTH)).status_code == 404
    assert (await client.delete(path, headers=AUTH)).status_code == 404


async def test_bad_bodies_and_missing_tokens_are_refused(
    setup: tuple[httpx.AsyncClient, object],
) -> None:
    client, _ = setup
    r = await client.post(
        "/internal/v1/scrape/targets", json={"job": "x", "url": "gopher://h/"}, headers=AUTH
    )
    assert r.status_code == 422 and "scheme must be http or https" in r.text
    r = await client.post("/internal/v1/scrape/targets", json={"job": "x", "url": "http://h/"})
    assert r.status_code == 401
    r = await client.get("/internal/v1/scrape/targets/not-an-id", headers=AUTH)
    assert r.status_code == 422


async def test_health_is_recorded_and_shown(setup: tuple[httpx.AsyncClient, object]) -> None:
    client, sessions = setup
    r = await client.post(
        "/internal/v1/scrape/targets", json={"job": "j", "url": "http://h:1/m"}, headers=AUTH
    )
    target_id = r.json()["id"]
    at = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    status = targets.Status("down", at, "timed out after 10 s", 10.0, 0)
    async with sessions() as session:  # type: ignore[operator]
        await targets.record_status(
            session, statuses={target_id: status, "00000000-0000-0000-0000-000000000000": status}
        )
    shown = (await client.get(f"/internal/v1/scrape/targets/{target_id}", headers=AUTH)).json()
    assert shown["health"] == "down" and shown["last_error"] == "timed out after 10 s"
    assert shown["last_scrape"].startswith("2026-11-22T03:00:00")
    r = await client.get("/internal/v1/scrape/targets", params={"health": "up"}, headers=AUTH)
    assert r.json()["targets"] == []


async def test_discovered_targets_follow_their_pods_and_the_api_cannot_change_them(
    setup: tuple[httpx.AsyncClient, object],
) -> None:
    client, sessions = setup
    pod_a = ScrapeTargetCreate(job="kubernetes-pods", url="http://10.1.0.1:9100/metrics")
    pod_b = ScrapeTargetCreate(job="kubernetes-pods", url="http://10.1.0.2:9100/metrics")
    async with sessions() as session:  # type: ignore[operator]
        assert await targets.sync_discovered(
            session, source="kubernetes", wanted={"ns/a": pod_a, "ns/b": pod_b}
        ) == (2, 0, 0)
    listed = (await client.get("/internal/v1/scrape/targets", headers=AUTH)).json()["targets"]
    assert {t["source"] for t in listed} == {"kubernetes"}
    r = await client.delete(f"/internal/v1/scrape/targets/{listed[0]['id']}", headers=AUTH)
    assert r.status_code == 409 and "discovery" in r.json()["detail"]
    moved = pod_b.model_copy(update={"url": "http://10.1.0.3:9100/metrics"})
    async with sessions() as session:  # type: ignore[operator]
        assert await targets.sync_discovered(
            session, source="kubernetes", wanted={"ns/b": moved}
        ) == (0, 1, 1)
        assert await targets.sync_discovered(
            session, source="kubernetes", wanted={"ns/b": moved}
        ) == (0, 0, 0)
    listed = (await client.get("/internal/v1/scrape/targets", headers=AUTH)).json()["targets"]
    assert [t["url"] for t in listed] == ["http://10.1.0.3:9100/metrics"]
