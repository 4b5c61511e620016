"""Registered clusters: a name and a kubeconfig, kept encrypted in deploy's database.

A launch target names a cluster (`target.cluster: prod-eu`); "local" is this host's
local runtime and needs no registration. The kubeconfig is sealed with Fernet
(AES-128-CBC + HMAC-SHA256) under a key from OPSLINE_DEPLOY_SECRET_KEY, or from a key
file created on first use (mode 0600) when that is unset. Nothing read back through the
API carries credentials: only the name, server, context and when it was registered.

A kubeconfig must be self-contained, because the deploy worker that uses it may run on
another machine than the one it was registered from: certificates and keys inline
(`*-data`), no file references, and no `exec` or `auth-provider` plugins (they would run
commands on the deploy host).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Column, LargeBinary
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.deploy.models import InstanceState, utcnow

log = logging.getLogger(__name__)

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
MAX_KUBECONFIG_BYTES = 256 * 1024
_FILE_KEYS = {
    "cluster": ("certificate-authority",),
    "user": ("client-certificate", "client-key", "tokenFile"),
}
_PLUGIN_KEYS = ("exec", "auth-provider")


class ClusterError(ValueError):
    """A kubeconfig that cannot be used, with every reason."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class ClusterNotFound(LookupError):
    pass


class ClusterInUse(Exception):
    pass


class Cluster(SQLModel, table=True):
    __tablename__ = "clusters"

    name: str = Field(primary_key=True, max_length=63)
    server: str = Field(max_length=2000)
    context: str = Field(max_length=253)
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Sealer:
    """Encrypts kubeconfigs at rest. The key never appears in logs or answers."""

    def __init__(self, secret: str | None, key_file: Path) -> None:
        if secret:
            raw = hashlib.sha256(secret.encode()).digest()
            log.info("cluster credentials sealed with OPSLINE_DEPLOY_SECRET_KEY")
        else:
            raw = self._key_from_file(key_file)
        self._fernet = Fernet(base64.urlsafe_b64encode(raw))

    @staticmethod
    def _key_from_file(path: Path) -> bytes:
        if path.is_file():
            raw = base64.urlsafe_b64decode(path.read_bytes().strip())
            if len(raw) != 32:
                raise ValueError(f"{path}: not a 32-byte key (base64); delete it to start over")
            log.info("cluster credentials sealed with the key in %s", path)
            return raw
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.urlsafe_b64encode(raw))
        log.warning(
            "created the cluster credentials key %s: back it up, or set "
            "OPSLINE_DEPLOY_SECRET_KEY (every deploy replica needs the same key)",
            path,
        )
        return raw

    def seal(self, config: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(orjson.dumps(config))

    def open(self, sealed: bytes) -> dict[str, Any]:
        try:
            loaded = orjson.loads(self._fernet.decrypt(sealed))
        except InvalidToken:
            raise ValueError(
                "cannot decrypt the kubeconfig: the secret key changed since it was "
                "registered; register the cluster again"
            ) from None
        return loaded if isinstance(loaded, dict) else {}


def _named(config: dict[str, Any], section: str, errors: list[str]) -> dict[str, dict]:
    items = config.get(section)
    if not isinstance(items, list) or not items:
        errors.append(f"{section}: a kubeconfig needs a non-empty list of {section}")
        return {}
    out: dict[str, dict] = {}
    for pos, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            errors.append(f"{section}[{pos}]: an entry needs a name")
            continue
        out[item["name"]] = item
    return out


def validate(text: str, context: str | None = None) -> tuple[dict[str, Any], str, str]:
    """The kubeconfig as a dict reduced to one context, its server URL and context name."""
    if len(text.encode()) > MAX_KUBECONFIG_BYTES:
        raise ClusterError([f"the kubeconfig is larger than {MAX_KUBECONFIG_BYTES} bytes"])
    try:
        config = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ClusterError([f"{where}invalid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ClusterError([f"invalid YAML: {exc}"]) from None
    if not isinstance(config, dict):
        raise ClusterError(["a kubeconfig is a mapping (clusters, contexts, users)"])
    errors: list[str] = []
    clusters = _named(config, "clusters", errors)
    contexts = _named(config, "contexts", errors)
    users = _named(config, "users", errors)
    if errors:
        raise ClusterError(errors)
    chosen = context or config.get("current-context")
    if not chosen:
        raise ClusterError(["no context: name one, or set current-context"])
    if chosen not in contexts:
        raise ClusterError([f"context {chosen!r} is not in contexts ({', '.join(contexts)})"])
    ctx = contexts[chosen].get("context") or {}
    cluster = clusters.get(str(ctx.get("cluster")))
    user = users.get(str(ctx.get("user")))
    if cluster is None:
        errors.append(f"context {chosen!r}: cluster {ctx.get('cluster')!r} is not in clusters")
    if user is None:
        errors.append(f"context {chosen!r}: user {ctx.get('user')!r} is not in users")
    if errors:
        raise ClusterError(errors)
    assert cluster is not None and user is not None
    server = str((cluster.get("cluster") or {}).get("server") or "")
    if not server.startswith(("https://", "http://")):
        errors.append(f"cluster {cluster['name']!r}: server must be an http(s) URL, not {server!r}")
    for section, entry, body in (
        ("cluster", cluster, cluster.get("cluster") or {}),
        ("user", user, user.get("user") or {}),
    ):
        for key in _FILE_KEYS[section]:
            if body.get(key):
                errors.append(
                    f"{section} {entry['name']!r}: {key} refers to a file on this machine; "
                    f"inline it as {key}-data (base64)"
                    if key != "tokenFile"
                    else f"user {entry['name']!r}: tokenFile refers to a file; use token"
                )
    for key in _PLUGIN_KEYS:
        if (user.get("user") or {}).get(key):
            errors.append(
                f"user {user['name']!r}: {key} plugins run commands on the deploy host and "
                "are not accepted; use a token or client certificate (e.g. a ServiceAccount "
                "token)"
            )
    if errors:
        raise ClusterError(errors)
    reduced = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [user],
        "contexts": [contexts[chosen]],
        "current-context": chosen,
    }
    return reduced, server, chosen


def view(cluster: Cluster) -> dict[str, Any]:
    """What the API shows: never the credentials."""
    return {
        "name": cluster.name,
        "server": cluster.server,
        "context": cluster.context,
        "created_at": cluster.created_at,
        "updated_at": cluster.updated_at,
    }


async def register(
    session: AsyncSession, sealer: Sealer, *, name: str, text: str, context: str | None
) -> tuple[Cluster, bool]:
    """Create or replace the cluster; True when it is new."""
    config, server, chosen = validate(text, context)
    found = await session.get(Cluster, name)
    created = found is None
    row = found or Cluster(name=name, server=server, context=chosen, sealed=b"")
    row.server, row.context, row.sealed = server, chosen, sealer.seal(config)
    row.updated_at = utcnow()
    session.add(row)
    await session.commit()
    await session.refresh(row)
    return row, created


async def get(session: AsyncSession, name: str) -> Cluster:
    row = await session.get(Cluster, name)
    if row is None:
        raise ClusterNotFound(
            f"cluster {name!r} is not registered: PUT /v1/clusters/{name} with its kubeconfig"
        )
    return row


async def list_all(session: AsyncSession) -> list[Cluster]:
    return list((await session.exec(select(Cluster).order_by(Cluster.name))).all())


async def remove(session: AsyncSession, name: str) -> None:
    row = await get(session, name)
    users = (
        await session.exec(select(InstanceState.instance).where(InstanceState.cluster == name))
    ).all()
    if users:
        raise ClusterInUse(
            f"cluster {name!r} still runs instances {', '.join(sorted(users))}: uninstall them "
            "first"
        )
    await session.delete(row)
    await session.commit()


async def load(session: AsyncSession, sealer: Sealer, name: str) -> dict[str, Any]:
    """The kubeconfig of a registered cluster, decrypted, for kubernetes-asyncio."""
    return sealer.open((await get(session, name)).sealed)
