"""The chart lints, and every object it renders is valid for every Kubernetes version
from 1.27 to the newest kubernetes-validate knows, with the default values (a
self-contained install) and with bring-your-own values."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.deploy_chart.chart import (
    CHART,
    NAMESPACE,
    OLDEST_KUBE,
    byo_values,
    find,
    kube_versions,
    merged,
    render,
)

VERSIONS = kube_versions()
# Kinds the chart may render and that live in a namespace. Anything else (ClusterRole,
# Namespace, PersistentVolume, StorageClass, CRDs, webhooks…) is cluster-scoped: it
# collides between releases (the k3s trouble) and needs cluster-admin to install.
NAMESPACED = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "Ingress",
    "NetworkPolicy",
    "PersistentVolumeClaim",
    "Pod",  # the `helm test` hook
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "Secret",
    "Service",
    "ServiceAccount",
    "StatefulSet",
}
CLUSTER_WIDE = {
    "deploy": {"rbac": {"clusterWide": True}},
    "dataops-ingest": {"rbac": {"create": True, "clusterWide": True}},
}
# CRD kinds kubernetes-validate has no schema for.
CRD_GROUPS = ("monitoring.coreos.com/",)


def value_sets() -> dict[str, dict[str, Any] | None]:
    return {"default": None, "byo": byo_values()}


@pytest.fixture(scope="module", params=["default", "byo"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(value_sets()[request.param])


def validate_all(objects: list[dict[str, Any]], version: str) -> list[str]:
    errors = []
    for obj in objects:
        if obj["apiVersion"].startswith(CRD_GROUPS):
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            errors.append(f"{obj['kind']} {obj['metadata']['name']}: {path}: {exc.message}")
    return errors


def test_newest_schemas_are_tested() -> None:
    assert VERSIONS[0] == "1.27.0"
    assert VERSIONS[-1].startswith(".".join(kubernetes_validate.latest_version().split(".")[:2]))
    assert len(VERSIONS) >= 10, VERSIONS


@pytest.mark.parametrize("values_name", ["default", "byo"])
@pytest.mark.parametrize("version", VERSIONS)
def test_lint_is_clean(version: str, values_name: str) -> None:
    report = helm.lint(
        CHART, value_sets()[values_name], kube_version=f"v{version}", namespace=NAMESPACE
    )
    assert report["total_charts_linted"] == 1
    assert not report["errors"], report["errors"]
    problems = [m for m in report["messages"] if int(m["severity"]) >= 2]
    assert not problems, problems


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid(version: str, rendered: list[dict[str, Any]]) -> None:
    assert rendered
    assert validate_all(rendered, version) == []


@pytest.mark.parametrize("version", [VERSIONS[0], VERSIONS[-1]])
def test_cluster_wide_and_optional_objects_are_valid(version: str) -> None:
    optional = {
        "global": {"serviceMonitor": {"enabled": True}},
        "gateway": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "host": "opsline.example.com",
                "tls": [{"secretName": "opsline-tls", "hosts": ["opsline.example.com"]}],
            }
        },
    }
    values = merged(CLUSTER_WIDE, optional)
    for kind_values in (values, merged(byo_values(), values)):
        objects = render(kind_values)
        assert find(objects, "ClusterRole") and find(objects, "ServiceMonitor")
        (ingress,) = find(objects, "Ingress")
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": "opsline-gateway", "port": {"name": "http"}}
        assert validate_all(objects, version) == []


def test_the_validator_catches_a_broken_object() -> None:
    """The schema check is real: a misspelt field fails it."""
    deployment = find(render(), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    assert validate_all([deployment], VERSIONS[-1])


def _constraint(chart_yaml: str) -> tuple[int, int]:
    kube = yaml.safe_load(chart_yaml)["kubeVersion"]
    m = re.fullmatch(r">=\s*(\d+)\.(\d+)\.0-0", kube)
    assert m, f"kubeVersion {kube!r}: expected '>=X.Y.0-0' (the -0 admits vendor builds)"
    return int(m[1]), int(m[2])


def test_kube_version_constraint_admits_exactly_the_tested_versions() -> None:
    """helm install refuses an older cluster with a clear message, from Chart.yaml."""
    charts = [CHART / "Chart.yaml", *sorted(CHART.glob("charts/*/Chart.yaml"))]
    for path in charts:
        if yaml.safe_load(path.read_text()).get("type") == "library":
            continue
        assert _constraint(path.read_text()) == OLDEST_KUBE, path


def test_templates_do_not_depend_on_the_cluster_version() -> None:
    """One render stands for every version: no template branches on .Capabilities."""
    templates = [p for p in CHART.rglob("*") if "templates" in p.parts and p.is_file()]
    assert len(templates) > 10
    for path in templates:
        assert ".Capabilities" not in path.read_text(), path


def test_no_cluster_scoped_object_unless_asked(rendered: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in rendered}
    assert kinds <= NAMESPACED, kinds - NAMESPACED
    for obj in rendered:
        # a namespace other than the release's only for RBAC that names it (rbac.namespaces)
        assert obj["metadata"].get("namespace", NAMESPACE) == NAMESPACE, obj["metadata"]


def test_cluster_scoped_rbac_only_when_a_value_asks() -> None:
    objects = render(CLUSTER_WIDE)
    names = {o["metadata"]["name"] for o in find(objects, "ClusterRole")}
    assert names == {f"{NAMESPACE}-opsline-deploy", f"{NAMESPACE}-opsline-dataops-ingest"}
    for binding in find(objects, "ClusterRoleBinding"):
        (subject,) = binding["subjects"]
        assert subject["namespace"] == NAMESPACE and subject["kind"] == "ServiceAccount"
    # …and the namespaced Roles of those two are gone
    assert {o["metadata"]["name"] for o in find(objects, "Role")} == {"opsline-build"}


def _claims(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = [(o["metadata"]["name"], o["spec"]) for o in find(objects, "PersistentVolumeClaim")]
    for sts in find(objects, "StatefulSet"):
        for template in sts["spec"].get("volumeClaimTemplates", []):
            found.append((sts["metadata"]["name"], template["spec"]))
    return found


def test_no_storage_class_is_assumed(rendered: list[dict[str, Any]]) -> None:
    for name, spec in _claims(rendered):
        assert "storageClassName" not in spec, name
    assert not find(rendered, "PersistentVolume") and not find(rendered, "StorageClass")


def test_a_named_storage_class_is_used() -> None:
    fast = {"persistence": {"storageClass": "fast"}}
    objects = render({"kafka": fast, "postgresql": fast, "elasticsearch": fast, "build": fast})
    claims = _claims(objects)
    assert len(claims) == 4
    assert all(spec["storageClassName"] == "fast" for _, spec in claims)


def test_stores_run_without_any_storage_when_asked() -> None:
    """For a cluster with no default storage class: emptyDirs, no claim at all."""
    off = {"persistence": {"enabled": False}}
    objects = render({"kafka": off, "postgresql": off, "elasticsearch": off, "build": off})
    assert _claims(objects) == []
    for sts in find(objects, "StatefulSet"):
        volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
        assert "emptyDir" in volumes["data"], sts["metadata"]["name"]
