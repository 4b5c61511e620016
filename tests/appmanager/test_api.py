"""The appmanager API: each catalogue error becomes the HTTP answer with its reason."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from libs import db
from libs.db.migrate import upgrade
from services.appmanager import api
from services.appmanager.main import MIGRATIONS


class _Relay:
    def wake(self) -> None:
        pass


@pytest.fixture
async def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = db.create_engine(f"sqlite:///{tmp_path}/a.db")
    await upgrade(engine, MIGRATIONS, lock="test")
    app = FastAPI()
    app.state.sessions = db.session_factory(engine)
    app.state.relay = _Relay()
    app.include_router(api.build_router(guard=lambda: None, market_roots=[tmp_path.as_uri()]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://appmanager"
    ) as c:
        yield c
    await engine.dispose()


async def test_not_found_conflict_and_bad_input_answers(client: httpx.AsyncClient) -> None:
    missing = await client.get("/internal/v1/apps/nope")
    assert missing.status_code == 404 and "no app named 'nope'" in missing.text
    build = await client.post("/internal/v1/apps/nope/builds", json={})
    assert build.status_code == 404
    no_build = await client.get("/internal/v1/builds/0000")
    assert no_build.status_code == 404
    outside = await client.get("/internal/v1/market", params={"market": "file:///etc"})
    assert outside.status_code == 422 and "outside the allowed" in outside.text
    bad = await client.post("/internal/v1/apps:apply", content=b"kind: [")
    assert bad.status_code == 422 and "invalid YAML" in bad.text
    no_instance = await client.post("/internal/v1/instances/x/rollback", json={})
    assert no_instance.status_code == 404
