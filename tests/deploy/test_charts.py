"""Helm components and config files on Kubernetes: rendered, labelled, applied, pruned."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from libs.testing.k8s_double import K8sDouble
from services.deploy.charts import adopt, render_helm
from services.deploy.kubernetes import (
    CONFIG_HASH,
    INSTANCE,
    MANAGED_BY,
    KubernetesTarget,
    RenderError,
    render,
)
from tests.deploy.test_kubernetes import by_kind, web

CHART_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels: {app.kubernetes.io/name: cache, helm.sh/chart: cache-0.1.0}
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}}}
    spec:
      containers:
        - name: cache
          image: "{{ .Values.image }}"
          env: [{name: MODE, value: "{{ .Values.mode }}"}]
"""
CHART_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: {{ .Release.Name }}}
spec:
  selector: {app: {{ .Release.Name }}}
  ports: [{port: 6379, targetPort: 6379}]
"""


def package_chart(root: Path, *, extra: dict[str, str] | None = None) -> tuple[str, str]:
    """A chart packaged with the Helm SDK, as the build service does: (file URI, digest)."""
    import helm_python as helm

    chart = root / "cache"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: cache\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("replicas: 1\nimage: redis:7\nmode: lru\n")
    (chart / "templates" / "deployment.yaml").write_text(CHART_DEPLOYMENT)
    (chart / "templates" / "service.yaml").write_text(CHART_SERVICE)
    (chart / "templates" / "NOTES.txt").write_text("thanks for installing\n")
    for name, text in (extra or {}).items():
        (chart / "templates" / name).write_text(text)
    out = root / "pkg"
    out.mkdir()
    archive = Path(helm.package(str(chart), destination=str(out)))
    return archive.as_uri(), "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()


def cache_release(uri: str, digest: str, **values: Any) -> dict[str, Any]:
    return {
        "spec": {
            "name": "cache",
            "type": "helm",
            "source": {"chart": "./chart"},
            "traits": {"values": values},
        },
        "artifact": {"kind": "helm-chart", "uri": uri, "digest": digest},
    }


async def test_a_chart_renders_to_labelled_objects_in_install_order(tmp_path: Path) -> None:
    uri, digest = package_chart(tmp_path)
    objects = await render_helm("shop-prod", "shop", 4, cache_release(uri, digest, replicas=3.0))
    assert [o["kind"] for o in objects] == ["Service", "Deployment"]  # NOTES.txt skipped
    deployment = by_kind(objects)["Deployment"]
    assert deployment["metadata"]["name"] == "shop-prod-cache"  # the release name
    assert deployment["metadata"]["namespace"] == "shop"
    assert deployment["spec"]["replicas"] == 3  # traits.values over the chart's values
    labels = deployment["metadata"]["labels"]
    assert labels[MANAGED_BY] == "opsline" and labels[INSTANCE] == "shop-prod"
    assert labels["app.kubernetes.io/name"] == "cache"  # the chart's own labels stay


async def test_a_chart_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    uri, _ = package_chart(tmp_path)
    with pytest.raises(RenderError, match="does not match its digest"):
        await render_helm("shop-prod", "shop", 1, cache_release(uri, "sha256:" + "0" * 64))
    with pytest.raises(RenderError, match="no packaged chart"):
        await render_helm("shop-prod", "shop", 1, cache_release("", ""))


async def test_a_template_error_is_a_render_error(tmp_path: Path) -> None:
    uri, digest = package_chart(
        tmp_path, extra={"bad.yaml": '{{ required "set .Values.password" .Values.password }}'}
    )
    with pytest.raises(RenderError, match=r"set \.Values\.password"):
        await render_helm("shop-prod", "shop", 1, cache_release(uri, digest))


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"},
            "ClusterRole cr from t.yaml is cluster-scoped",
        ),
        (
            {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor"},
            "kind ServiceMonitor is not one opsline manages",
        ),
        ({"apiVersion": "apps/v1beta1", "kind": "Deployment"}, "apiVersion apps/v1beta1"),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "kube-system"},
            "it asks for namespace kube-system, the target is shop",
        ),
    ],
)
def test_objects_a_namespaced_install_cannot_own_are_refused(
    obj: dict[str, Any], expected: str
) -> None:
    meta = {"name": "cr", **({"namespace": obj.pop("namespace")} if "namespace" in obj else {})}
    with pytest.raises(RenderError, match=expected):
        adopt(
            [("t.yaml", {**obj, "metadata": meta})],
            instance="i",
            namespace="shop",
            revision=1,
            cname="c",
        )


def test_config_files_become_a_mounted_configmap_that_restarts_pods_on_change() -> None:
    files = {"app.yaml": "level: info\n", "limits.conf": "max=3\n"}
    objects = by_kind(
        render("shop", "demo", 1, web(config={"mountPath": "/etc/shop", "files": files}))
    )
    cm, deployment = objects["ConfigMap"], objects["Deployment"]
    assert cm["data"] == files and cm["metadata"]["name"] == "shop-web"
    pod = deployment["spec"]["template"]
    assert pod["spec"]["volumes"] == [{"name": "config", "configMap": {"name": "shop-web"}}]
    assert pod["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "config", "mountPath": "/etc/shop"}
    ]
    changed = render(
        "shop", "demo", 2, web(config={"files": {**files, "app.yaml": "level: debug\n"}})
    )
    new_pod = by_kind(changed)["Deployment"]["spec"]["template"]
    assert (
        new_pod["metadata"]["annotations"][CONFIG_HASH]
        != pod["metadata"]["annotations"][CONFIG_HASH]
    )
    assert new_pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/etc/opsline/web"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"files": {}}, "needs files"),
        ({"files": {"../passwd": "x"}}, "is not a file name"),
        ({"files": {"a": "x"}, "mountPath": "etc"}, "must be absolute"),
        ({"files": {"a": "x"}, "mode": 1}, "unknown keys"),
        ({"files": {"big": "x" * 1_000_001}}, "a ConfigMap holds at most"),
    ],
)
def test_bad_config_traits_say_why(config: dict[str, Any], expected: str) -> None:
    with pytest.raises(RenderError, match=expected):
        render("shop", "demo", 1, web(config=config))


def test_progress_deadline_trait() -> None:
    deployment = by_kind(render("shop", "demo", 1, web(progressDeadlineSeconds=1200)))["Deployment"]
    assert deployment["spec"]["progressDeadlineSeconds"] == 1200
    with pytest.raises(RenderError, match="progressDeadlineSeconds"):
        render("shop", "demo", 1, web(progressDeadlineSeconds=0))


async def test_a_chart_release_is_applied_rolled_out_and_uninstalled(
    tmp_path: Path,
) -> None:
    double = K8sDouble.start(rollout_seconds=0.1)
    try:
        kubeconfig = double.kubeconfig(tmp_path / "kubeconfig")
        uri, digest = package_chart(tmp_path)
        objects = await render_helm("cache-dev", "dev", 1, cache_release(uri, digest, replicas=2))
        async with KubernetesTarget(str(kubeconfig)) as target:
            target.poll_seconds = 0.05
            await target.apply("dev", objects)
            await target.wait("dev", objects, timeout=30)
            live = double.get("deployments", "dev", "cache-dev-cache")
            assert live is not None and live["status"]["availableReplicas"] == 2
            removed = await target.uninstall("dev", "cache-dev")
        assert sorted(removed) == ["Deployment/cache-dev-cache", "Service/cache-dev-cache"]
        assert double.get("services", "dev", "cache-dev-cache") is None
    finally:
        double.stop()
