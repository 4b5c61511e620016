"""docker-compose.yml and deploy/Dockerfile stay in step with the code's settings.

No Docker needed: the compose file is parsed as YAML (safe_load resolves the
`<<:` merge keys) and checked against the settings classes the services read.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic_settings import BaseSettings

from libs.config import CommonSettings, env_names
from libs.observability.metrics import ServiceMetrics
from services.gateway.settings import GatewaySettings
from tests import settings_inventory

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def _own_classes(package: str) -> list[type[BaseSettings]]:
    own = settings_inventory.own_settings_class(package)
    others = settings_inventory.settings_classes(package)[1:]
    return [own, *(cls for cls in others if cls is not own)]


# compose service → (python module, settings classes it reads besides CommonSettings;
# the first one has the service's host and port), found in the code (tests/settings_inventory)
SERVICES: dict[str, tuple[str, list[type[BaseSettings]]]] = {
    name: (package, _own_classes(package)) for name, package in settings_inventory.SERVICES.items()
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
    assert len(urls) == 6  # gateway, appmanager, build, deploy, dataops-ingest, aiops-detector
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


# --- monitoring, healthchecks and data volumes --------------------------------------

DASHBOARDS = ROOT / "deploy" / "dashboards"
# each store's data folder, where its named volume must be mounted
DATA_PATHS = {
    "kafka": "/var/lib/kafka/data",
    "postgres": "/var/lib/postgresql/data",
    "elasticsearch": "/usr/share/elasticsearch/data",
    "prometheus": "/prometheus",
    "grafana": "/var/lib/grafana",
}


def mounts(svc: dict) -> dict[str, str]:
    """Mount target → source (a named volume or a ./path) of a compose service."""
    out = {}
    for volume in svc.get("volumes", []):
        source, target = volume.split(":")[:2]
        out[target] = source
    return out


def mounted_file(svc: dict, target: str) -> Path:
    source = mounts(svc)[target]
    assert source.startswith("./"), f"{target} is not a file of this repository"
    return ROOT / source


def test_every_container_has_a_healthcheck() -> None:
    services = load()["services"]
    assert {"prometheus", "grafana"} <= set(services)
    for name, svc in services.items():
        if svc.get("restart") == "no":  # a one-shot job: it runs to completion and exits
            continue
        check = svc.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert svc.get("restart") == "unless-stopped", name


def test_missing_databases_are_created_on_every_up() -> None:
    """initdb scripts run on an empty volume only: the one-shot covers upgrades."""
    services = load()["services"]
    one_shot = services["postgres-databases"]
    assert one_shot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert mounts(one_shot) == {
        "/etc/opsline/initdb.sql": next(
            src for dst, src in mounts(services["postgres"]).items() if "initdb" in dst
        )
    }


def test_data_lives_in_named_volumes() -> None:
    compose = load()
    declared = set(compose["volumes"])
    for name, path in DATA_PATHS.items():
        source = mounts(compose["services"][name]).get(path)
        assert source in declared, f"{name}: {path} is not on a named volume"
    for name in SERVICES:
        assert mounts(compose["services"][name])["/var/lib/opsline"] in declared, name
    kafka = environment(compose["services"]["kafka"])
    assert kafka["KAFKA_LOG_DIRS"].startswith(DATA_PATHS["kafka"])
    assert "--storage.tsdb.path=/prometheus" in compose["services"]["prometheus"]["command"]


def test_prometheus_scrapes_every_service() -> None:
    prometheus = load()["services"]["prometheus"]
    config = yaml.safe_load(mounted_file(prometheus, "/etc/prometheus/prometheus.yml").read_text())
    jobs = {
        job["job_name"]: {t for sc in job["static_configs"] for t in sc["targets"]}
        for job in config["scrape_configs"]
    }
    for name in SERVICES:
        # the job is named as the service: the dashboards group by job
        assert jobs.get(name) == {f"{name}:{default_port(name)}"}, name
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboards() -> None:
    services = load()["services"]
    grafana = services["grafana"]
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    provisioning = mounted_file(grafana, "/etc/grafana/provisioning")
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert any(p.startswith("127.0.0.1:9090:") for p in services["prometheus"]["ports"])
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "opsline.yaml").read_text())[
        "providers"
    ]
    path = provider["options"]["path"]
    assert mounted_file(grafana, path) == DASHBOARDS
    home = environment(grafana)["GF_SECURITY_ADMIN_PASSWORD"]
    m = INTERPOLATION.fullmatch(home)
    assert m and m["op"] == ":?", "Grafana must not start with a default admin password"


def exported_metric_names() -> set[str]:
    """Every series name the services export, from the metric families in the code."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
    }
    registry = ServiceMetrics(CollectorRegistry()).registry
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def dashboards() -> dict[str, dict]:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, "no dashboards in deploy/dashboards"
    return {f.name: json.loads(f.read_text()) for f in files}


def panel_targets(dashboard: dict) -> list[tuple[dict, dict]]:
    return [
        (panel, target)
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel.get("targets", [])
    ]


def test_dashboards_are_grafana_json_with_a_datasource_variable() -> None:
    uids = set()
    for name, d in dashboards().items():
        assert d["schemaVersion"] >= 36, name
        assert d["uid"] not in uids and len(d["uid"]) <= 40, name
        uids.add(d["uid"])
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", name
        assert variables["datasource"]["query"] == "prometheus", name
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        targets = panel_targets(d)
        assert targets, name
        for panel, target in targets:
            assert panel["datasource"]["uid"] == "${datasource}", (name, panel["title"])
            assert target["expr"].strip(), (name, panel["title"])
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, (name, panel["title"])


def test_dashboard_queries_use_metrics_the_services_export() -> None:
    exported = exported_metric_names()
    assert "opsline_events_consumed_total" in exported  # the derivation itself works
    for name, d in dashboards().items():
        for panel, target in panel_targets(d):
            metrics = set(re.findall(r"\b(opsline_[a-z_]+)\b", target["expr"]))
            assert metrics, f"{name} / {panel['title']}: no opsline metric"
            unknown = metrics - exported
            assert not unknown, f"{name} / {panel['title']}: {unknown} are not exported"
    # what the dashboards are for: throughput and lag per topic, handler latency,
    # build and deploy outcomes, ingest rate, alerts
    exprs = " ".join(t["expr"] for d in dashboards().values() for _, t in panel_targets(d))
    for needle in (
        "opsline_consumer_lag",
        "opsline_handler_seconds_bucket",
        "opsline_samples_total",
        'topic="build.events"',
        'topic="deploy.events"',
        'topic="alert.events"',
        "by (topic)",
    ):
        assert needle in exprs, needle


def test_dashboard_event_types_are_ones_the_code_publishes() -> None:
    """A build outcome panel must name event types that exist, not guesses."""
    code = "\n".join(p.read_text() for p in (ROOT / "services").rglob("*.py"))
    for d in dashboards().values():
        for _, target in panel_targets(d):
            for what in re.findall(r"io\.opsline\.(build|deploy)\.([a-z_]+)", target["expr"]):
                domain, kind = what
                assert f'"{kind}"' in code or f"io.opsline.{domain}.{kind}" in code, what
            for group in re.findall(r"io\.opsline\.build\.\(([a-z_|]+)\)", target["expr"]):
                for kind in group.split("|"):
                    assert f'"{kind}"' in code, kind
