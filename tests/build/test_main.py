"""The service wiring: settings, the read API, and refusing an artifact store it cannot use."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from libs import db
from libs.config import CommonSettings, env_names
from libs.events.outbox import OutboxMessage
from libs.events.worker import TransientError
from libs.objectstore import LocalStore
from services.build.artifacts import ArtifactConfigError
from services.build.handlers import on_build_commands
from services.build.kaniko import KanikoBuilder
from services.build.main import create_app, image_builder
from services.build.models import TABLES
from services.build.settings import BuildSettings
from tests.build.conftest import batch, requested

TOKEN = "t" * 32


def test_settings_are_simple_and_prefixed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "OPSLINE_BUILD_MAX_PARALLEL" in env_names(BuildSettings)
    for name, field in BuildSettings.model_fields.items():
        assert field.annotation in (str, int, float, bool, str | None), name
    monkeypatch.setenv("OPSLINE_BUILD_MAX_PARALLEL", "7")
    monkeypatch.setenv("OPSLINE_BUILD_HEARTBEAT_TIMEOUT_S", "12.5")
    settings = BuildSettings()
    assert (settings.max_parallel, settings.heartbeat_timeout_s) == (7, 12.5)
    assert (settings.port, settings.max_attempts, settings.build_timeout_s) == (8082, 2, 900.0)
    assert settings.worker_name().rsplit("-", 1)[1].isdigit()  # hostname-pid
    assert settings.database(Path("/h")) == "sqlite:////h/build.db"
    assert settings.artifact_root(Path("/h")) == Path("/h/artifacts")


def test_an_image_builder_only_with_a_cluster() -> None:
    assert image_builder(BuildSettings()) is None
    kaniko = image_builder(BuildSettings(kubeconfig="/etc/kube/config"))
    assert isinstance(kaniko, KanikoBuilder) and kaniko.deadline_s == 900


def test_an_unusable_artifact_store_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ArtifactConfigError, match="OPSLINE_BUILD_ARTIFACT_URL"):
        create_app(BuildSettings(artifact_url="s3://a:b@bucket/x"), CommonSettings(home=tmp_path))


async def test_the_read_api(tmp_path: Path) -> None:
    settings = BuildSettings(database_url=f"sqlite:///{tmp_path}/build.db")
    app = create_app(settings, CommonSettings(home=tmp_path, internal_token=SecretStr(TOKEN)))
    objects = app.state.runner.store.objects
    assert isinstance(objects, LocalStore) and objects.root == (tmp_path / "artifacts").resolve()
    engine = app.state.sessions.kw["bind"]
    await db.create_tables(engine, [OutboxMessage, *TABLES])
    event = requested("b-1", [{"name": "w", "type": "process", "source": {"dir": "/w"}}])
    await on_build_commands(batch(event), app.state.sessions)
    transport = httpx.ASGITransport(app=app)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://build") as client:
        assert (await client.get("/internal/v1/builds/b-1")).status_code == 401
        got = await client.get("/internal/v1/builds/b-1", headers=auth)
        assert got.status_code == 200
        body = got.json()
        assert (body["build_id"], body["status"], body["attempt"]) == ("b-1", "QUEUED", 1)
        assert body["artifacts"] == [] and body["created_at"].endswith("Z")
        assert "request" not in body
        missing = await client.get("/internal/v1/builds/nope", headers=auth)
        assert missing.status_code == 404 and missing.json()["detail"] == "no build 'nope'"
        listed = await client.get("/internal/v1/builds?app=shop", headers=auth)
        assert [b["build_id"] for b in listed.json()["builds"]] == ["b-1"]
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["runner"] is False
    await engine.dispose()


async def test_a_database_that_is_away_is_a_transient_error(tmp_path: Path) -> None:
    (tmp_path / "db-is-a-directory").mkdir()
    engine = db.create_engine(f"sqlite:///{tmp_path}/db-is-a-directory")
    with pytest.raises(TransientError, match="build database"):
        await on_build_commands(batch(requested("b-1", [])), db.session_factory(engine))
    await engine.dispose()
