"""Markets: published package versions in a folder or an S3 bucket, with an index.

Layout (like a Helm repository): <market>/index.json and
<market>/<app>/<version>/<component>.<ext>. Publishing copies each artifact and checks
its digest; installing checks the digests again and records the package in this
catalogue, its artifacts pointing into the market. File I/O runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events import topics as t
from libs.events.envelope import CloudEvent
from libs.events.outbox import add_to_outbox
from libs.objectstore import ObjectStore, ObjectStoreError, open_store
from services.appmanager import service
from services.appmanager.models import App, PackageVersion

_EXT = {"tar.gz": "tar.gz", "helm-chart": "tgz"}
INDEX = "index.json"


class MarketError(ValueError):
    pass


def market_store(url: str, roots: list[str]) -> ObjectStore:
    """The market's store, if the URL is inside one of the allowed market locations.

    A market is written by this service, so callers may not point it anywhere else.
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise MarketError("market URL: control characters are not allowed")
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else url).resolve()
        canonical = path.as_uri()
    elif parsed.scheme == "s3":
        canonical = url.split("?", 1)[0].rstrip("/")
    else:
        raise MarketError(f"market URL {url!r}: use file:///path/to/market or s3://bucket/prefix")
    for root in roots:
        root = root.rstrip("/")
        if canonical == root or canonical.startswith(root + "/"):
            break
    else:
        raise MarketError(
            f"market {canonical} is outside the allowed market locations ({', '.join(roots)})"
        )
    try:
        return open_store(canonical if parsed.scheme in ("", "file") else url)
    except ValueError as exc:
        raise MarketError(str(exc)) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


@contextlib.contextmanager
def _locked(store: ObjectStore) -> Iterator[None]:
    """Serialize index updates on a folder market (on S3 the last writer wins)."""
    root = getattr(store, "root", None)
    if root is None:
        yield
        return
    Path(root).mkdir(parents=True, exist_ok=True)
    with (Path(root) / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def read_index(store: ObjectStore) -> dict[str, Any]:
    try:
        if not store.exists(INDEX):
            return {"packages": []}
        return orjson.loads(store.get_bytes(INDEX))  # type: ignore[no-any-return]
    except ObjectStoreError as exc:
        raise MarketError(f"cannot read the market index: {exc}") from None


def _fetch(uri: str, dest: Path) -> None:
    """Copy an artifact (a file:// or s3:// URI) to a local file."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        source = open_store("file:///")
    elif parsed.scheme == "s3":
        source = open_store(f"s3://{parsed.netloc}")
    else:
        raise MarketError(f"artifact {uri}: only file:// and s3:// artifacts can be published")
    source.download(uri, dest)


def _publish(store: ObjectStore, entry: dict[str, Any], artifacts: list[dict[str, Any]]) -> None:
    app, version = entry["app"], entry["version"]
    with _locked(store), tempfile.TemporaryDirectory() as tmp:
        index = read_index(store)
        if any(p["app"] == app and p["version"] == version for p in index["packages"]):
            raise service.Conflict(f"{app} {version} is already in this market")
        for artifact in artifacts:
            if artifact.get("kind") == "image":
                entry["artifacts"].append(dict(artifact))
                continue
            local = Path(tmp) / "artifact"
            _fetch(artifact["uri"], local)
            if _sha256(local) != artifact["digest"]:
                raise MarketError(f"artifact {artifact['uri']} no longer matches its digest")
            key = f"{app}/{version}/{artifact['component']}.{_EXT.get(artifact['kind'], 'bin')}"
            store.put_file(key, local)
            entry["artifacts"].append({**artifact, "uri": key})
        index["packages"].append(entry)
        store.put_bytes(INDEX, orjson.dumps(index, option=orjson.OPT_INDENT_2))


async def publish(
    session: AsyncSession, *, app: str, version: str, store: ObjectStore
) -> dict[str, Any]:
    rows = await session.exec(
        select(PackageVersion).where(PackageVersion.app == app, PackageVersion.version == version)
    )
    package = rows.first()
    if package is None:
        raise service.NotFound(f"app {app!r} has no package version {version}")
    entry: dict[str, Any] = {
        "app": app,
        "version": version,
        "published_at": datetime.now(UTC).isoformat(),
        "spec": orjson.loads(package.spec),
        "artifacts": [],
    }
    try:
        await asyncio.to_thread(_publish, store, entry, orjson.loads(package.artifacts))
    except ObjectStoreError as exc:
        raise MarketError(str(exc)) from None
    return {"app": app, "version": version, "published_at": entry["published_at"]}


def listing(store: ObjectStore) -> dict[str, Any]:
    packages = read_index(store)["packages"]
    return {
        "packages": [
            {"app": p["app"], "version": p["version"], "published_at": p["published_at"]}
            for p in packages
        ]
    }


def _verified(store: ObjectStore, entry: dict[str, Any]) -> list[dict[str, Any]]:
    artifacts = []
    with tempfile.TemporaryDirectory() as tmp:
        for artifact in entry["artifacts"]:
            if artifact.get("kind") == "image":
                artifacts.append(artifact)
                continue
            local = Path(tmp) / "artifact"
            try:
                store.download(artifact["uri"], local)
            except (ObjectStoreError, ValueError) as exc:
                raise MarketError(f"market artifact {artifact['uri']} is missing: {exc}") from None
            if _sha256(local) != artifact["digest"]:
                raise MarketError(f"market artifact {artifact['uri']} does not match its digest")
            artifacts.append({**artifact, "uri": store.uri(artifact["uri"])})
    return artifacts


async def install(
    session: AsyncSession, *, store: ObjectStore, app: str, version: str
) -> dict[str, Any]:
    index = await asyncio.to_thread(read_index, store)
    entry = next(
        (p for p in index["packages"] if p["app"] == app and p["version"] == version), None
    )
    if entry is None:
        raise service.NotFound(f"the market has no {app} {version}")
    artifacts = await asyncio.to_thread(_verified, store, entry)
    existing = (
        await session.exec(
            select(PackageVersion).where(
                PackageVersion.app == app, PackageVersion.version == version
            )
        )
    ).first()
    if existing is not None:
        same = {a["digest"] for a in orjson.loads(existing.artifacts)} == {
            a["digest"] for a in artifacts
        }
        if same:
            return {"app": app, "version": version, "action": "unchanged"}
        raise service.Conflict(f"{app} {version} exists here with other artifacts")
    spec = entry["spec"]
    if await session.get(App, app) is None:
        session.add(
            App(
                name=app,
                team=spec["meta"].get("team", "default"),
                description=spec["meta"].get("description", ""),
                spec=orjson.dumps(spec).decode(),
            )
        )
    session.add(
        PackageVersion(
            app=app,
            version=version,
            build_id="market",
            spec=orjson.dumps(spec).decode(),
            artifacts=orjson.dumps(artifacts).decode(),
        )
    )
    created = {"app": app, "version": version, "build_id": "market", "artifacts": artifacts}
    add_to_outbox(
        session,
        topic=t.APP_EVENTS,
        key=app,
        event=CloudEvent.create(
            type="io.opsline.package.created", source=service.SOURCE, subject=app, data=created
        ),
    )
    await session.commit()
    return {"app": app, "version": version, "action": "installed"}
