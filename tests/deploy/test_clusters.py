"""Cluster registration: kubeconfigs validated, sealed at rest, never shown back."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
import yaml

from libs import db
from services.deploy import clusters
from services.deploy.models import TABLES, InstanceState

TOKEN = "s3cr3t-bearer-token-for-the-test"


def _kubeconfig(**user: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "prod", "cluster": {"server": "https://10.0.0.1:6443"}},
            {"name": "other", "cluster": {"server": "https://10.9.9.9:6443"}},
        ],
        "users": [
            {"name": "deployer", "user": user or {"token": TOKEN}},
            {"name": "admin", "user": {"token": "another-secret"}},
        ],
        "contexts": [
            {"name": "prod-ctx", "context": {"cluster": "prod", "user": "deployer"}},
            {"name": "other-ctx", "context": {"cluster": "other", "user": "admin"}},
        ],
        "current-context": "prod-ctx",
    }


def _text(config: dict) -> str:
    return yaml.safe_dump(config)


def test_validate_keeps_only_the_chosen_context() -> None:
    reduced, server, context = clusters.validate(_text(_kubeconfig()))
    assert (server, context) == ("https://10.0.0.1:6443", "prod-ctx")
    assert [c["name"] for c in reduced["clusters"]] == ["prod"]
    assert [u["name"] for u in reduced["users"]] == ["deployer"]
    assert "another-secret" not in str(reduced)
    _, server, context = clusters.validate(_text(_kubeconfig()), "other-ctx")
    assert (server, context) == ("https://10.9.9.9:6443", "other-ctx")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("clusters:\n  - name: x\n    bad: [\n", "line 4, column 1: invalid YAML"),
        ("- just\n- a list\n", "a kubeconfig is a mapping"),
        (_text({**_kubeconfig(), "users": []}), "users: a kubeconfig needs a non-empty list"),
        (_text({**_kubeconfig(), "current-context": "nope"}), "context 'nope' is not in contexts"),
        (_text({**_kubeconfig(), "current-context": None}), "no context"),
        (
            _text(_kubeconfig(**{"client-key": "/home/me/.kube/key.pem"})),
            "client-key refers to a file on this machine; inline it as client-key-data",
        ),
        (
            _text(_kubeconfig(exec={"command": "aws", "args": ["eks", "get-token"]})),
            "exec plugins run commands on the deploy host",
        ),
        (
            _text(
                {
                    **_kubeconfig(),
                    "clusters": [{"name": "prod", "cluster": {"server": "10.0.0.1:6443"}}],
                }
            ),
            "server must be an http(s) URL",
        ),
    ],
)
def test_unusable_kubeconfigs_say_why(text: str, expected: str) -> None:
    with pytest.raises(clusters.ClusterError) as caught:
        clusters.validate(text)
    assert expected in str(caught.value)


def test_the_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    key_file = tmp_path / "home" / "deploy-secret.key"
    sealed = clusters.Sealer(None, key_file).seal({"token": TOKEN})
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert TOKEN.encode() not in sealed
    assert clusters.Sealer(None, key_file).open(sealed) == {"token": TOKEN}
    with pytest.raises(ValueError, match="the secret key changed"):
        clusters.Sealer("a different key", key_file).open(sealed)
    (tmp_path / "short.key").write_bytes(base64.urlsafe_b64encode(b"too short"))
    with pytest.raises(ValueError, match="not a 32-byte key"):
        clusters.Sealer(None, tmp_path / "short.key")


async def test_register_replace_list_and_remove(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path}/deploy.db")
    await db.create_tables(engine, [*TABLES, clusters.Cluster])
    sessions = db.session_factory(engine)
    sealer = clusters.Sealer("key from the environment", tmp_path / "unused.key")
    assert not (tmp_path / "unused.key").exists()
    async with sessions() as session:
        row, created = await clusters.register(
            session, sealer, name="prod", text=_text(_kubeconfig()), context=None
        )
        assert created and TOKEN.encode() not in row.sealed
        assert TOKEN not in str(clusters.view(row))
        _, created = await clusters.register(
            session, sealer, name="prod", text=_text(_kubeconfig()), context="other-ctx"
        )
        assert not created
        loaded = await clusters.load(session, sealer, "prod")
        assert loaded["current-context"] == "other-ctx"
        assert [c.name for c in await clusters.list_all(session)] == ["prod"]
        with pytest.raises(clusters.ClusterNotFound, match="PUT /v1/clusters/nope"):
            await clusters.load(session, sealer, "nope")
        session.add(InstanceState(instance="shop-prod", cluster="prod", namespace="shop"))
        await session.commit()
        with pytest.raises(clusters.ClusterInUse, match="shop-prod"):
            await clusters.remove(session, "prod")
        await session.delete(await session.get(InstanceState, "shop-prod"))
        await session.commit()
        await clusters.remove(session, "prod")
        assert await clusters.list_all(session) == []
    await engine.dispose()
