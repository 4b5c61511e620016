"""Markets: publish a package version to a folder or an S3 bucket, list it, install it."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import orjson
import pytest

from libs import db
from libs.db.migrate import upgrade
from libs.objectstore import ObjectStore
from services.appmanager import market, service
from services.appmanager.main import MIGRATIONS
from services.appmanager.models import PackageVersion
from tests.s3server import BUCKET

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


@pytest.fixture(params=["folder", "s3"])
def market_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "folder":
        url = (tmp_path / "market").as_uri()
        return market.market_store(url, [tmp_path.as_uri()])
    endpoint = request.getfixturevalue("s3_endpoint")
    request.getfixturevalue("aws_env")
    url = f"s3://{BUCKET}/markets/{uuid.uuid4().hex}?endpoint={endpoint}"
    return market.market_store(url, [f"s3://{BUCKET}/markets"])


async def _seed(sessions, artifact: dict) -> None:  # type: ignore[no-untyped-def]
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


async def test_publish_list_and_install_into_another_catalogue(
    tmp_path: Path, market_store: ObjectStore
) -> None:
    source_engine, source = await _catalogue(tmp_path / "a.db")
    target_engine, target = await _catalogue(tmp_path / "b.db")
    artifact = _artifact(tmp_path, b"packed bytes")
    await _seed(source, artifact)
    async with source() as session:
        published = await market.publish(session, app="hello", version="1.0.0", store=market_store)
    assert published["version"] == "1.0.0"
    assert market_store.get_bytes("hello/1.0.0/web.tar.gz") == b"packed bytes"
    assert [p["version"] for p in market.listing(market_store)["packages"]] == ["1.0.0"]
    with pytest.raises(service.Conflict, match="already in this market"):
        async with source() as session:
            await market.publish(session, app="hello", version="1.0.0", store=market_store)

    async with target() as session:
        installed = await market.install(session, store=market_store, app="hello", version="1.0.0")
    assert installed["action"] == "installed"
    async with target() as session:
        again = await market.install(session, store=market_store, app="hello", version="1.0.0")
        (package,) = await service.list_packages(session, app_name="hello")
        app = await service.get(session, name="hello")
    assert again["action"] == "unchanged"
    assert app.team == "demo"
    (copied,) = orjson.loads(package.artifacts)
    assert copied["digest"] == artifact["digest"]
    assert copied["uri"] == market_store.uri("hello/1.0.0/web.tar.gz")
    await source_engine.dispose()
    await target_engine.dispose()


async def test_a_tampered_market_is_refused(tmp_path: Path, market_store: ObjectStore) -> None:
    engine, sessions = await _catalogue(tmp_path / "a.db")
    await _seed(sessions, _artifact(tmp_path, b"original"))
    async with sessions() as session:
        await market.publish(session, app="hello", version="1.0.0", store=market_store)
    market_store.put_bytes("hello/1.0.0/web.tar.gz", b"evil")
    other_engine, other = await _catalogue(tmp_path / "b.db")
    with pytest.raises(market.MarketError, match="does not match its digest"):
        async with other() as session:
            await market.install(session, store=market_store, app="hello", version="1.0.0")
    await engine.dispose()
    await other_engine.dispose()


def test_markets_stay_inside_the_allowed_locations(tmp_path: Path) -> None:
    roots = [tmp_path.as_uri(), "s3://shared/markets"]
    with pytest.raises(market.MarketError, match="outside the allowed market locations"):
        market.market_store("file:///etc", roots)
    with pytest.raises(market.MarketError, match="outside the allowed"):
        market.market_store((tmp_path / ".." / "x").as_uri(), roots)
    with pytest.raises(market.MarketError, match="outside the allowed"):
        market.market_store("s3://other-bucket/m", roots)
    with pytest.raises(market.MarketError, match="use file:///path/to/market or s3://"):
        market.market_store("http://example.com/m", roots)
    inside = market.market_store(str(tmp_path / "m"), roots)
    assert inside.uri("index.json") == (tmp_path / "m" / "index.json").as_uri()
