"""Markets: a static folder of published package versions, with an index (like a Helm repo).

Layout: <market>/index.json and <market>/<app>/<version>/<component>.<ext>. Publishing
copies each artifact and checks its digest; installing checks the digests again and
records the package in this catalogue, its artifacts pointing into the market.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
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
from services.appmanager import service
from services.appmanager.models import App, PackageVersion

_EXT = {"tar.gz": "tar.gz", "helm-chart": "tgz"}


class MarketError(ValueError):
    pass


def market_dir(url: str, roots: list[Path]) -> Path:
    """The market's folder, if the URL is file:// (or a path) inside an allowed root."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        raise MarketError("s3:// markets are not supported yet: use a folder (file:///…)")
    if parsed.scheme not in ("", "file"):
        raise MarketError(f"market URL {url!r}: use file:///path/to/market")
    path = Path(parsed.path if parsed.scheme == "file" else url).resolve()
    if not any(path == r or r in path.parents for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise MarketError(f"market {path} is outside the allowed market folders ({allowed})")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def read_index(folder: Path) -> dict[str, Any]:
    index = folder / "index.json"
    if not index.exists():
        return {"packages": []}
    return orjson.loads(index.read_bytes())  # type: ignore[no-any-return]


def _write_index(folder: Path, index: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".index-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(index, option=orjson.OPT_INDENT_2))
    os.replace(tmp, folder / "index.json")


def _local(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise MarketError(
            f"artifact {uri} is not a local file; only file:// artifacts can be published for now"
        )
    return Path(parsed.path)


async def publish(session: AsyncSession, *, app: str, version: str, folder: Path) -> dict[str, Any]:
    rows = await session.exec(
        select(PackageVersion).where(PackageVersion.app == app, PackageVersion.version == version)
    )
    package = rows.first()
    if package is None:
        raise service.NotFound(f"app {app!r} has no package version {version}")
    artifacts = orjson.loads(package.artifacts)
    entry = {
        "app": app,
        "version": version,
        "published_at": datetime.now(UTC).isoformat(),
        "spec": orjson.loads(package.spec),
        "artifacts": [],
    }
    with _locked(folder):
        index = read_index(folder)
        if any(p["app"] == app and p["version"] == version for p in index["packages"]):
            raise service.Conflict(f"{app} {version} is already in this market")
        target = folder / app / version
        target.mkdir(parents=True, exist_ok=True)
        for artifact in artifacts:
            if artifact.get("kind") == "image":
                entry["artifacts"].append({**artifact})
                continue
            source = _local(artifact["uri"])
            if _sha256(source) != artifact["digest"]:
                raise MarketError(f"artifact {source} no longer matches its digest")
            name = f"{artifact['component']}.{_EXT.get(artifact['kind'], 'bin')}"
            shutil.copyfile(source, target / name)
            entry["artifacts"].append({**artifact, "uri": f"{app}/{version}/{name}"})
        index["packages"].append(entry)
        _write_index(folder, index)
    return {"app": app, "version": version, "published_at": entry["published_at"]}


def listing(folder: Path) -> dict[str, Any]:
    packages = read_index(folder)["packages"]
    return {
        "packages": [
            {"app": p["app"], "version": p["version"], "published_at": p["published_at"]}
            for p in packages
        ]
    }


async def install(session: AsyncSession, *, folder: Path, app: str, version: str) -> dict[str, Any]:
    entry = next(
        (p for p in read_index(folder)["packages"] if p["app"] == app and p["version"] == version),
        None,
    )
    if entry is None:
        raise service.NotFound(f"the market has no {app} {version}")
    artifacts = []
    for artifact in entry["artifacts"]:
        if artifact.get("kind") == "image":
            artifacts.append(artifact)
            continue
        path = (folder / artifact["uri"]).resolve()
        if folder not in path.parents or not path.exists():
            raise MarketError(f"market artifact {artifact['uri']} is missing")
        if _sha256(path) != artifact["digest"]:
            raise MarketError(f"market artifact {artifact['uri']} does not match its digest")
        artifacts.append({**artifact, "uri": path.as_uri()})
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
