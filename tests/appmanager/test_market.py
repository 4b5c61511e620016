"""Markets: publish a package version to a folder, list it, install it elsewhere."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from libs import db
from libs.db.migrate import upgrade
from services.appmanager import market, service
from services.appmanager.main import MIGRATIONS
from services.appmanager.models import PackageVersion

SPEC = {
    "meta": {"name": "hello", "team": "demo", "description": "", "labels": {}},
    "parameters": [],
    "components": [],
    "build": {"version": None},
}


async def _catalogue(path: Path):  # type: ignore[no-untyped-def]
    engine = db.create_engine(f"sqlite:///{path}")
    await upgrade(engine, MIGRATIONS, lock="test")
    return engine, db.session_factory(engine)


def _artifact(tmp_path: Path, content: bytes) -> dict:
    path = tmp_path / "store" / "web.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return {
        "component": "web",
        "kind": "tar.gz",
        "uri": path.as_uri(),
        "digest": "sha256:" + hashlib.sha256(content).hexdigest(),
        "size": len(content),
    }


async def test_publish_list_and_install_into_another_catalogue(tmp_path: Path) -> None:
    source_engine, source = await _catalogue(tmp_path / "a.db")
    target_engine, target = await _catalogue(tmp_path / "b.db")
    artifact = _artifact(tmp_path, b"packed bytes")
    async with source() as session:
        session.add(
            PackageVersion(
                app="hello",
                version="1.0.0",
                build_id="b1",
                spec=orjson.dumps(SPEC).decode(),
                artifacts=orjson.dumps([artifact]).decode(),
            )
        )
        await session.commit()
    folder = market.market_dir((tmp_path / "market").as_uri(), [tmp_path])
    async with source() as session:
        published = await market.publish(session, app="hello", version="1.0.0", folder=folder)
    assert published["version"] == "1.0.0"
    assert (folder / "hello" / "1.0.0" / "web.tar.gz").read_bytes() == b"packed bytes"
    assert [p["version"] for p in market.listing(folder)["packages"]] == ["1.0.0"]
    with pytest.raises(service.Conflict, match="already in this market"):
        async with source() as session:
            await market.publish(session, app="hello", version="1.0.0", folder=folder)

    async with target() as session:
        installed = await market.install(session, folder=folder, app="hello", version="1.0.0")
    assert installed["action"] == "installed"
    async with target() as session:
        again = await market.install(session, folder=folder, app="hello", version="1.0.0")
        (package,) = await service.list_packages(session, app_name="hello")
        app = await service.get(session, name="hello")
    assert again["action"] == "unchanged"
    assert app.team == "demo"
    (copied,) = orjson.loads(package.artifacts)
    assert copied["digest"] == artifact["digest"]
    assert copied["uri"] == (folder / "hello" / "1.0.0" / "web.tar.gz").as_uri()
    await source_engine.dispose()
    await target_engine.dispose()


async def test_a_tampered_market_is_refused(tmp_path: Path) -> None:
    engine, sessions = await _catalogue(tmp_path / "a.db")
    artifact = _artifact(tmp_path, b"original")
    async with sessions() as session:
        session.add(
            PackageVersion(
                app="hello",
                version="1.0.0",
                build_id="b1",
                spec=orjson.dumps(SPEC).decode(),
                artifacts=orjson.dumps([artifact]).decode(),
            )
        )
        await session.commit()
    folder = tmp_path / "market"
    async with sessions() as session:
        await market.publish(session, app="hello", version="1.0.0", folder=folder)
    (folder / "hello" / "1.0.0" / "web.tar.gz").write_bytes(b"evil")
    other_engine, other = await _catalogue(tmp_path / "b.db")
    with pytest.raises(market.MarketError, match="does not match its digest"):
        async with other() as session:
            await market.install(session, folder=folder, app="hello", version="1.0.0")
    await engine.dispose()
    await other_engine.dispose()


def test_markets_stay_inside_the_allowed_folders(tmp_path: Path) -> None:
    with pytest.raises(market.MarketError, match="outside the allowed market folders"):
        market.market_dir("file:///etc", [tmp_path])
    with pytest.raises(market.MarketError, match="outside the allowed"):
        market.market_dir((tmp_path / ".." / "x").as_uri(), [tmp_path])
    with pytest.raises(market.MarketError, match="s3:// markets are not supported yet"):
        market.market_dir("s3://bucket/m", [tmp_path])
    assert market.market_dir(str(tmp_path / "m"), [tmp_path]) == tmp_path / "m"
