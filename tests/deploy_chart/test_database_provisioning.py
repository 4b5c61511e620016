"""The scripts that create each service's database on the bundled PostgreSQL, run for
real against a PostgreSQL server: the chart's side container and the compose one-shot.
Both create what is missing and keep what exists, so they work again after an upgrade
adds a service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.dbservers import DatabaseServer
from tests.deploy_chart.chart import RELEASE, ROOT, one, render

pytestmark = pytest.mark.skipif(
    not (shutil.which("psql") and shutil.which("createdb")), reason="needs psql and createdb"
)


def pg_env(server: DatabaseServer) -> dict[str, str]:
    url = urlsplit(server.url)
    return {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(server.port),
        "PGUSER": url.username or "postgres",
        "PGDATABASE": url.path.lstrip("/") or "postgres",
    }


def databases(server: DatabaseServer) -> set[str]:
    out = subprocess.run(
        ["psql", "-tAc", "SELECT datname FROM pg_database"],
        env=pg_env(server),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


@pytest.fixture
def clean(postgres_server: DatabaseServer) -> Iterator[DatabaseServer]:
    """The server without any database these tests create, before and after."""

    def drop() -> None:
        for name in databases(postgres_server) & (NAMES | COMPOSE_NAMES):
            subprocess.run(["dropdb", name], env=pg_env(postgres_server), check=True)

    drop()
    yield postgres_server
    drop()


def chart_names() -> list[str]:
    names = one(render(), "ConfigMap", f"{RELEASE}-postgresql-databases")["data"]["names"]
    return names.split()


NAMES = set(chart_names())


def chart_script(names_file: Path) -> str:
    """The side container's script as Kubernetes runs it ($$ is its escape for $)."""
    sts = one(render(), "StatefulSet", f"{RELEASE}-postgresql")
    (side,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "databases"]
    (mount,) = side["volumeMounts"]
    script = side["args"][0].replace("$$", "$")
    return script.replace(f"{mount['mountPath']}/names", str(names_file)).replace(
        "sleep 30", "exit 0"
    )


def compose_one_shot() -> dict:
    with (ROOT / "docker-compose.yml").open() as f:
        return yaml.safe_load(f)["services"]["postgres-databases"]


def compose_script(initdb: Path) -> str:
    """The one-shot's script as the shell gets it ($$ is compose's escape for $)."""
    svc = compose_one_shot()
    (mount,) = svc["volumes"]
    target = mount.split(":")[1]
    return svc["command"][0].replace("$$", "$").replace(target, str(initdb))


INITDB = ROOT / compose_one_shot()["volumes"][0].split(":")[0]
COMPOSE_NAMES = set(re.findall(r'^CREATE DATABASE "(\w+)";', INITDB.read_text(), re.M))


def run(script: str, server: DatabaseServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", script],
        env=pg_env(server),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_chart_side_container_creates_the_missing_databases(
    clean: DatabaseServer, tmp_path: Path
) -> None:
    names_file = tmp_path / "names"
    first = sorted(NAMES)[:2]
    names_file.write_text("\n".join(first) + "\n")
    result = run(chart_script(names_file), clean)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(first) <= databases(clean)
    assert all(f"databases: created {n}" in result.stdout for n in first)
    # an upgrade adds services: the list grows, the existing ones are left alone
    names_file.write_text("\n".join(sorted(NAMES)) + "\n")
    result = run(chart_script(names_file), clean)
    assert result.returncode == 0, result.stdout + result.stderr
    assert NAMES <= databases(clean)
    created = set(re.findall(r"databases: created (\S+)", result.stdout))
    assert created == NAMES - set(first)


def test_compose_one_shot_creates_the_missing_databases(clean: DatabaseServer) -> None:
    script = compose_script(INITDB)
    wanted = COMPOSE_NAMES
    assert len(wanted) >= 4
    result = run(script, clean)
    assert result.returncode == 0, result.stdout + result.stderr
    assert wanted <= databases(clean)
    again = run(script, clean)
    assert again.returncode == 0 and "created" not in again.stdout, again.stdout + again.stderr


def test_compose_one_shot_fails_when_it_cannot_create(clean: DatabaseServer) -> None:
    """A failure is an exit code (compose shows it), not a silent success."""
    nowhere = DatabaseServer(url=clean.url, port=1)  # nothing listens on port 1
    result = run(compose_script(INITDB), nowhere)
    assert result.returncode != 0
