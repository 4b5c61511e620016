"""Each service subchart runs its service as the code expects: every setting the code
reads is set, secrets come only from Secrets, probes hit /healthz and /readyz, and the
endpoints point at objects the release really has."""

from __future__ import annotations

import base64
import os
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy_chart.chart import (
    NAMESPACE,
    RELEASE,
    byo_values,
    container,
    env_list,
    expand,
    find,
    one,
    render,
)
from tests.settings_inventory import SERVICES, own_settings_class, settings, settings_classes

VALUES = {"default": None, "byo": byo_values()}


@pytest.fixture(scope="module", params=list(VALUES))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(VALUES[request.param])


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render()


def deployment(objects: list[dict[str, Any]], service: str) -> dict[str, Any]:
    return one(objects, "Deployment", f"{RELEASE}-{service}")


def secret_values(objects: list[dict[str, Any]]) -> dict[str, str]:
    """Generated Secrets, as "<name>/<key>" → value."""
    return {
        f"{s['metadata']['name']}/{key}": base64.b64decode(value).decode()
        for s in find(objects, "Secret")
        for key, value in (s.get("data") or {}).items()
    }


def default_port(service: str) -> int:
    return own_settings_class(SERVICES[service]).model_fields["port"].default


def test_one_deployment_per_service_running_its_module(rendered: list[dict[str, Any]]) -> None:
    names = {d["metadata"]["name"] for d in find(rendered, "Deployment")}
    assert names == {f"{RELEASE}-{s}" for s in SERVICES}
    for service, package in SERVICES.items():
        c = container(deployment(rendered, service))
        assert c["command"] == ["python", "-m", package], service
        assert c["image"] == c["image"].strip() and ":" in c["image"], c["image"]


def test_every_setting_the_code_reads_is_set(rendered: list[dict[str, Any]]) -> None:
    """Derived from the settings classes, so a new field fails here until the chart sets it."""
    for service, package in SERVICES.items():
        names = [e["name"] for e in env_list(deployment(rendered, service))]
        assert len(names) == len(set(names)), f"{service}: a variable is set twice"
        for s in settings(package):
            assert s.env in names, (
                f"{service}: {s.settings_class.__name__}.{s.field} ({s.env}) is not set "
                f"by charts/{service}"
            )


def test_no_setting_the_code_does_not_read(rendered: list[dict[str, Any]]) -> None:
    """A stale OPSLINE_ variable (a renamed or removed field) would silently do nothing."""
    for service, package in SERVICES.items():
        read = {s.env for s in settings(package)}
        for item in env_list(deployment(rendered, service)):
            if item["name"].startswith("OPSLINE_"):
                assert item["name"] in read, f"{service}: nothing reads {item['name']}"


def test_values_parse_as_the_code_expects(
    rendered: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = secret_values(rendered)
    for service, package in SERVICES.items():
        for key in list(os.environ):
            if key.startswith("OPSLINE_"):
                monkeypatch.delenv(key)
        env = expand(env_list(deployment(rendered, service)), secrets)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for cls in settings_classes(package):
            cls()  # raises on a value of the wrong type
        own = own_settings_class(package)().model_dump()
        assert own["host"] == "0.0.0.0", f"{service} must listen on all interfaces in its pod"
        assert own["port"] == default_port(service), service
        assert env["OPSLINE_HOME"] == "/var/lib/opsline"


def test_secret_settings_come_from_secrets(rendered: list[dict[str, Any]]) -> None:
    secret_names = {s["metadata"]["name"] for s in find(rendered, "Secret")}
    for service, package in SERVICES.items():
        env = {e["name"]: e for e in env_list(deployment(rendered, service))}
        for s in settings(package):
            if s.secret:
                ref = env[s.env].get("valueFrom", {}).get("secretKeyRef")
                assert ref and "value" not in env[s.env], (
                    f"{service}: {s.env} is not a secretKeyRef"
                )
        for item in env.values():
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            # a generated Secret must have the key; an existingSecret is the user's to fill
            if ref and ref["name"] in secret_names:
                secret = one(rendered, "Secret", ref["name"])
                assert ref["key"] in secret["data"], f"{service}: {ref} not in the Secret"


def test_credentials_in_urls_are_references(rendered: list[dict[str, Any]]) -> None:
    """A URL with a password names it as $(VAR), a secretKeyRef variable set before it."""
    for service in SERVICES:
        seen: dict[str, dict[str, Any]] = {}
        for item in env_list(deployment(rendered, service)):
            value = str(item.get("value", ""))
            if "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]:
                userinfo = urlsplit(value).netloc.rpartition("@")[0]
                password = userinfo.partition(":")[2]
                assert password.startswith("$(") and password.endswith(")"), (service, value)
                source = seen[password[2:-1]]
                assert "secretKeyRef" in source["valueFrom"], (service, item["name"])
            seen[item["name"]] = item


def test_secret_values_appear_only_in_secrets(default: list[dict[str, Any]]) -> None:
    values = [v for v in secret_values(default).values() if len(v) >= 16]
    assert len(values) >= 5  # internal, admin, deploy key; database and Elasticsearch passwords
    for obj in default:
        if obj["kind"] == "Secret":
            continue
        text = repr(obj)
        for value in values:
            assert value not in text, f"{obj['kind']} {obj['metadata']['name']} holds a secret"


def test_only_the_writer_gets_elasticsearch_credentials(rendered: list[dict[str, Any]]) -> None:
    for service in SERVICES:
        names = {e["name"] for e in env_list(deployment(rendered, service))}
        has = {"ELASTICSEARCH_USERNAME", "ELASTICSEARCH_PASSWORD"} <= names
        assert has == (service == "dataops-ingest"), service


def test_probes_use_healthz_and_readyz(rendered: list[dict[str, Any]]) -> None:
    for service in SERVICES:
        c = container(deployment(rendered, service))
        (port,) = c["ports"]
        assert port["name"] == "http" and port["containerPort"] == default_port(service)
        for probe in ("startupProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, (service, probe)
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, service
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], service
        svc = one(rendered, "Service", f"{RELEASE}-{service}")
        assert svc["spec"]["ports"][0]["port"] == default_port(service)
        assert svc["spec"]["selector"].items() <= pod_labels(deployment(rendered, service)).items()


def test_the_detector_may_wait_longer_for_kafka(default: list[dict[str, Any]]) -> None:
    """It serves /healthz only after Kafka answers: its startup budget is larger."""
    budget = {
        service: container(deployment(default, service))["startupProbe"]["failureThreshold"]
        for service in SERVICES
    }
    assert budget["aiops-detector"] > budget["gateway"] >= 12


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def test_every_pod_is_covered_by_a_network_policy(rendered: list[dict[str, Any]]) -> None:
    policies = find(rendered, "NetworkPolicy")
    for workload in find(rendered, "Deployment") + find(rendered, "StatefulSet"):
        labels = pod_labels(workload)
        matching = [
            p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, workload["metadata"]["name"]
        (rule,) = matching[0]["spec"]["ingress"]
        # the port clients use (the first one: http or client) is the one let in
        first = workload["spec"]["template"]["spec"]["containers"][0]["ports"][0]
        assert {"port": first["containerPort"], "protocol": "TCP"} in rule["ports"], policy_name(
            matching[0]
        )
        public = workload["metadata"]["name"] == f"{RELEASE}-gateway"
        assert ("from" not in rule) == public, workload["metadata"]["name"]


def policy_name(policy: dict[str, Any]) -> str:
    return f"NetworkPolicy {policy['metadata']['name']}"


def test_release_pods_may_reach_each_other(default: list[dict[str, Any]]) -> None:
    gateway_labels = pod_labels(deployment(default, "gateway"))
    for policy in find(default, "NetworkPolicy"):
        (rule,) = policy["spec"]["ingress"]
        if "from" in rule:
            selectors = [
                f["podSelector"]["matchLabels"] for f in rule["from"] if "podSelector" in f
            ]
            assert any(s.items() <= gateway_labels.items() for s in selectors), policy


def test_gateway_peers_are_the_other_services(rendered: list[dict[str, Any]]) -> None:
    from services.gateway.settings import GatewaySettings

    env = expand(env_list(deployment(rendered, "gateway")), {})
    peers = GatewaySettings(peers=env["OPSLINE_GATEWAY_PEERS"]).peer_urls()
    assert set(peers) == set(SERVICES) - {"gateway"}
    for peer, url in peers.items():
        assert url == f"http://{RELEASE}-{peer}:{default_port(peer)}"
        one(rendered, "Service", f"{RELEASE}-{peer}")


def test_bundled_endpoints_are_the_bundled_services(default: list[dict[str, Any]]) -> None:
    secrets = secret_values(default)
    for service, package in SERVICES.items():
        env = expand(env_list(deployment(default, service)), secrets)
        assert env["OPSLINE_KAFKA_BOOTSTRAP"] == f"{RELEASE}-kafka:9092"
        one(default, "Service", f"{RELEASE}-kafka")
        es = urlsplit(env["OPSLINE_ELASTICSEARCH_URL"])
        assert (es.hostname, es.port) == (f"{RELEASE}-elasticsearch", 9200)
        if service == "dataops-ingest":
            assert es.password == secrets[f"{RELEASE}-elasticsearch/password"]
        db_var = f"{own_settings_class(package).model_config['env_prefix']}DATABASE_URL"
        if db_var in env:
            db = urlsplit(env[db_var])
            assert (db.hostname, db.port) == (f"{RELEASE}-postgresql", 5432)
            assert db.password == secrets[f"{RELEASE}-postgresql/password"]


def test_bundled_postgresql_keeps_every_service_database(default: list[dict[str, Any]]) -> None:
    names = one(default, "ConfigMap", f"{RELEASE}-postgresql-databases")["data"]["names"].split()
    urls = [
        e["value"]
        for service in SERVICES
        for e in env_list(deployment(default, service))
        if e["name"].endswith("_DATABASE_URL")
    ]
    assert len(urls) >= 4
    assert sorted(url.rsplit("/", 1)[1] for url in urls) == sorted(names)
    sts = one(default, "StatefulSet", f"{RELEASE}-postgresql")
    volumes = sts["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "database-names",
        "configMap": {"name": f"{RELEASE}-postgresql-databases"},
    } in volumes


def test_bring_your_own_uses_your_endpoints_and_secrets() -> None:
    values = byo_values()
    g = values["global"]
    objects = render(values)
    assert not find(objects, "StatefulSet")
    assert not find(objects, "Secret"), "with existingSecrets the chart generates none"
    for service, package in SERVICES.items():
        d = deployment(objects, service)
        assert container(d)["image"] == f"{g['image']['repository']}:{g['image']['tag']}"
        env = expand(env_list(d), {})
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
            for e in env_list(d)
            if "valueFrom" in e
        }
        assert env["OPSLINE_KAFKA_BOOTSTRAP"] == g["kafka"]["bootstrap"]
        assert refs["OPSLINE_INTERNAL_TOKEN"] == g["secrets"]["existingSecret"]
        es = urlsplit(env["OPSLINE_ELASTICSEARCH_URL"])
        assert f"{es.scheme}://{es.hostname}:{es.port}" == g["elasticsearch"]["url"]
        if service == "dataops-ingest":
            assert refs["ELASTICSEARCH_PASSWORD"] == g["elasticsearch"]["existingSecret"]
        db_var = f"{own_settings_class(package).model_config['env_prefix']}DATABASE_URL"
        if db_var in env:
            assert refs["DATABASE_PASSWORD"] == g["database"]["existingSecret"]
            db = urlsplit(env[db_var])
            assert (db.hostname, db.port, db.username) == (
                g["database"]["host"],
                g["database"]["port"],
                g["database"]["user"],
            )
    assert "dataops_ingest" in _notes_databases(values)


def _notes_databases(values: dict[str, Any]) -> str:
    from tests.deploy_chart.chart import notes

    return notes(values)


def test_rbac_only_for_the_services_that_use_the_api(default: list[dict[str, Any]]) -> None:
    for service in SERVICES:
        d = deployment(default, service)
        automount = d["spec"]["template"]["spec"]["automountServiceAccountToken"]
        assert automount == (service in ("build", "deploy")), service
    roles = {r["metadata"]["name"]: r for r in find(default, "Role")}
    assert set(roles) == {f"{RELEASE}-build", f"{RELEASE}-deploy"}
    for name, role in roles.items():
        assert role["metadata"]["namespace"] == NAMESPACE
        binding = one(default, "RoleBinding", name)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}
        ]
    jobs = [r for r in roles[f"{RELEASE}-build"]["rules"] if "jobs" in r["resources"]]
    assert jobs and "create" in jobs[0]["verbs"]


def test_build_reaches_the_cluster_through_its_service_account(
    default: list[dict[str, Any]],
) -> None:
    import yaml

    d = deployment(default, "build")
    env = expand(env_list(d), {})
    mounts = {m["name"]: m["mountPath"] for m in container(d)["volumeMounts"]}
    assert env["OPSLINE_BUILD_KUBECONFIG"] == f"{mounts['kubeconfig']}/kubeconfig"
    assert env["OPSLINE_BUILD_BUILDER_NAMESPACE"] == NAMESPACE
    config = yaml.safe_load(
        one(default, "ConfigMap", f"{RELEASE}-build-kubeconfig")["data"]["kubeconfig"]
    )
    user = config["users"][0]["user"]
    assert user == {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}
    assert config["clusters"][0]["cluster"]["server"] == "https://kubernetes.default.svc"


def test_scaling_and_disruption(default: list[dict[str, Any]]) -> None:
    for pdb in find(default, "PodDisruptionBudget"):
        # maxUnavailable: a single replica can still be drained
        assert pdb["spec"] == {**pdb["spec"], "maxUnavailable": 1}
        assert "minAvailable" not in pdb["spec"]
    for hpa in find(default, "HorizontalPodAutoscaler"):
        target = one(default, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in target["spec"], "the HPA owns the replica count"
    assert len(find(default, "PodDisruptionBudget")) == len(SERVICES)


def test_service_monitors_only_when_asked(default: list[dict[str, Any]]) -> None:
    assert not find(default, "ServiceMonitor")
    objects = render({"global": {"serviceMonitor": {"enabled": True, "labels": {"release": "kp"}}}})
    monitors = find(objects, "ServiceMonitor")
    assert len(monitors) == len(SERVICES)
    for m in monitors:
        assert m["metadata"]["labels"]["release"] == "kp"
        assert m["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
        one(objects, "Service", m["metadata"]["name"])


def test_helm_test_hook_waits_for_the_gateway_readyz(default: list[dict[str, Any]]) -> None:
    """Run the hook's script for real against a /readyz that is 503, then 200."""
    import http.server
    import subprocess
    import sys
    import threading

    pod = one(default, "Pod", f"{RELEASE}-test-readyz")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["image"] == container(deployment(default, "gateway"))["image"]
    script = c["command"][2]
    gateway_url = f"http://{RELEASE}-gateway:{default_port('gateway')}/readyz"
    assert gateway_url in script
    one(default, "Service", f"{RELEASE}-gateway")
    answers = [503, 200]

    class Readyz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = answers.pop(0) if len(answers) > 1 else answers[0]
            body = b'{"ready": %s}' % (b"true" if status == 200 else b"false")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        local = f"http://127.0.0.1:{server.server_address[1]}/readyz"
        result = subprocess.run(
            [sys.executable, "-c", script.replace(gateway_url, local)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not ready yet" in result.stdout and "ready:" in result.stdout
