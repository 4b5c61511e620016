"""docker-compose.yml and deploy/Dockerfile stay in step with the code's settings.

No Docker needed: the compose file is parsed as YAML (safe_load resolves the
`<<:` merge keys) and checked against the settings classes the services read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

from libs.config import CommonSettings, env_names
from services.aiops_detector.settings import DetectorSettings
from services.appmanager.settings import AppmanagerSettings
from services.build.settings import BuildSettings
from services.dataops_ingest.settings import IngestSettings
from services.deploy.settings import DeploySettings
from services.gateway.settings import AdminTokenSettings, GatewaySettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

# compose service → (python module, settings classes it reads besides CommonSettings;
# the first one has the service's host and port)
SERVICES: dict[str, tuple[str, list[type[BaseSettings]]]] = {
    "gateway": ("services.gateway", [GatewaySettings, AdminTokenSettings]),
    "appmanager": ("services.appmanager", [AppmanagerSettings]),
    "build": ("services.build", [BuildSettings]),
    "deploy": ("services.deploy", [DeploySettings]),
    "dataops-ingest": ("services.dataops_ingest", [IngestSettings]),
    "aiops-detector": ("services.aiops_detector", [DetectorSettings]),
}
INFRA = ("kafka", "postgres", "elasticsearch")
REQUIRED_SECRETS = ("OPSLINE_INTERNAL_TOKEN", "OPSLINE_ADMIN_TOKEN", "OPSLINE_DEPLOY_SECRET_KEY")

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, ${NAME:+alt}
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^{}$]*))?\}"
)


def load() -> dict:
    with COMPOSE.open() as f:
        return yaml.safe_load(f)


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # the "KEY=value" list form
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def resolve(value: str) -> str:
    """Interpolate as compose would with nothing set: defaults, a stand-in for required ones."""

    def sub(m: re.Match[str]) -> str:
        op = m["op"] or ""
        if op.endswith("-"):
            return m["arg"]
        return "x" * 32 if op.endswith("?") else ""

    return INTERPOLATION.sub(sub, value)


def default_port(name: str) -> int:
    return SERVICES[name][1][0].model_fields["port"].default


def test_all_services_present() -> None:
    services = load()["services"]
    for name in (*INFRA, *SERVICES):
        assert name in services, f"docker-compose.yml has no service {name!r}"


def test_services_are_built_from_the_one_image() -> None:
    services = load()["services"]
    for name in SERVICES:
        build = services[name]["build"]
        assert build["dockerfile"] == "deploy/Dockerfile", name
        assert build.get("context", ".") == ".", name


def test_each_service_runs_its_own_module() -> None:
    services = load()["services"]
    for name, (module, _) in SERVICES.items():
        cmd = services[name]["command"]
        cmd = cmd.split() if isinstance(cmd, str) else list(cmd)
        assert cmd == ["python", "-m", module], f"{name}: {cmd} does not run {module}"
        assert (ROOT / module.replace(".", "/") / "__main__.py").is_file(), module


def test_services_wait_for_healthy_dependencies() -> None:
    services = load()["services"]
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert isinstance(depends, dict), f"{name}: depends_on needs the long form (conditions)"
        assert depends["kafka"]["condition"] == "service_healthy", name
        for dep, spec in depends.items():
            assert spec["condition"] == "service_healthy", f"{name} → {dep}"
        env = environment(services[name])
        if any(key.endswith("_DATABASE_URL") for key in env):
            assert "postgres" in depends, f"{name} uses PostgreSQL but does not wait for it"
    assert "elasticsearch" in services["dataops-ingest"]["depends_on"]


def test_services_have_a_readyz_healthcheck_and_restart() -> None:
    services = load()["services"]
    for name in SERVICES:
        svc = services[name]
        test = " ".join(svc["healthcheck"]["test"])
        assert f"http://127.0.0.1:{default_port(name)}/readyz" in test, name
        assert svc["restart"] == "unless-stopped", name
    for name in INFRA:
        assert services[name]["healthcheck"]["test"], name


def test_environment_covers_every_setting() -> None:
    services = load()["services"]
    for name, (_, classes) in SERVICES.items():
        env = environment(services[name])
        for cls in (CommonSettings, *classes):
            missing = [var for var in env_names(cls) if var not in env]
            assert not missing, (
                f"{name}: {cls.__name__} reads {missing}, not set in docker-compose.yml"
            )


def test_environment_values_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The values (interpolated with their defaults) are valid for the fields' types."""
    services = load()["services"]
    for name, (_, classes) in SERVICES.items():
        for key in list(os.environ):
            if key.startswith("OPSLINE_"):
                monkeypatch.delenv(key)
        for key, value in environment(services[name]).items():
            monkeypatch.setenv(key, resolve(value))
        common = CommonSettings()
        assert common.kafka_bootstrap == "kafka:19092", name
        assert str(common.home) == "/var/lib/opsline", name
        own = classes[0]()
        assert own.host == "0.0.0.0", f"{name} must listen on all interfaces in its container"
        assert own.port == default_port(name), name
        for cls in classes[1:]:
            cls()


def test_gateway_peers_are_the_other_services() -> None:
    env = environment(load()["services"]["gateway"])
    peers = GatewaySettings(peers=env["OPSLINE_GATEWAY_PEERS"]).peer_urls()
    assert set(peers) == set(SERVICES) - {"gateway"}
    for peer, url in peers.items():
        assert url == f"http://{peer}:{default_port(peer)}"


def test_only_the_gateway_is_published() -> None:
    services = load()["services"]
    assert services["gateway"]["ports"] == ["8080:8080"]
    for name in SERVICES:
        if name != "gateway":
            assert "ports" not in services[name], f"{name} should not publish a port"


def test_secrets_are_required_and_not_spread() -> None:
    services = load()["services"]
    for name in SERVICES:
        env = environment(services[name])
        m = INTERPOLATION.fullmatch(env["OPSLINE_INTERNAL_TOKEN"])
        assert m and m["name"] == "OPSLINE_INTERNAL_TOKEN" and m["op"] == ":?", name
        # only the gateway reads the admin token
        assert ("OPSLINE_ADMIN_TOKEN" in env) == (name == "gateway"), name
    m = INTERPOLATION.fullmatch(environment(services["gateway"])["OPSLINE_ADMIN_TOKEN"])
    assert m and m["name"] == "OPSLINE_ADMIN_TOKEN" and m["op"] == ":?"
    # only deploy holds the key that seals cluster credentials
    for name in SERVICES:
        assert ("OPSLINE_DEPLOY_SECRET_KEY" in environment(services[name])) == (name == "deploy")
    m = INTERPOLATION.fullmatch(environment(services["deploy"])["OPSLINE_DEPLOY_SECRET_KEY"])
    assert m and m["name"] == "OPSLINE_DEPLOY_SECRET_KEY" and m["op"] == ":?"


def test_interpolations_are_well_formed() -> None:
    lines = [line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#")]
    body = "\n".join(lines).replace("$$", "")  # $$ is compose's literal dollar
    found = set()
    for dollar in re.finditer(r"\$", body):
        m = INTERPOLATION.match(body, dollar.start())
        snippet = body[dollar.start() :].splitlines()[0][:60]
        assert m, f"malformed interpolation: {snippet!r}"
        if m["op"] in (":?", "?"):
            assert m["arg"].strip(), f"required variable without a message: {snippet!r}"
        found.add(m["name"])
    assert set(REQUIRED_SECRETS) <= found


def test_initdb_creates_each_service_database() -> None:
    services = load()["services"]
    mounts = [v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert mounts, "postgres has no init script mounted"
    sql = (ROOT / mounts[0].split(":")[0]).read_text()
    urls = [
        value
        for name in SERVICES
        for key, value in environment(services[name]).items()
        if key.endswith("_DATABASE_URL")
    ]
    assert len(urls) == 4
    for url in urls:
        database = url.rsplit("/", 1)[1]
        assert re.search(rf'^CREATE DATABASE "?{database}"?;', sql, re.M), database


def test_dockerfile_exists_and_uses_python_311() -> None:
    assert DOCKERFILE.is_file()
    froms = [
        line.split()[1]
        for line in DOCKERFILE.read_text().splitlines()
        if line.upper().startswith("FROM ")
    ]
    assert froms and froms[0].startswith("python:3.11"), froms
