"""`helm` components on Kubernetes: the packaged chart rendered with the Helm SDK.

The build service linted and packaged the chart (an immutable, digest-addressed .tgz);
here it is fetched, its digest checked, and rendered offline with `traits.values` as the
release's values, release name `<instance>-<component>`. The manifests become plain
objects that go through the same server-side apply, rollout wait, prune and uninstall
as every other component, so each object gets opsline's labels (the chart's own stay).

opsline installs an instance into one namespace: a chart that renders cluster-scoped
objects (ClusterRole, CustomResourceDefinition, Namespace, …) is refused with the object
named, as is a kind opsline does not manage.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from libs.objectstore import open_store
from services.deploy.kubernetes import (
    API_VERSIONS,
    KINDS,
    MANAGED_BY,
    OPSLINE,
    REVISION,
    RenderError,
    _plain,
    object_name,
    selector_labels,
)

CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "APIService",
    "IngressClass",
}
MAX_CHART_BYTES = 10 * 1024 * 1024
# What a Deployment needs exists before it: the order objects are applied in.
INSTALL_ORDER = [
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "Ingress",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
]


def _fetch(uri: str, digest: str, folder: Path) -> Path:
    """The chart archive as a local file whose sha256 matches the artifact's digest."""
    algorithm, _, expected = digest.partition(":")
    if algorithm != "sha256" or len(expected) != 64:
        raise RenderError(f"chart {uri}: digest {digest!r} is not sha256:<64 hex digits>")
    parts = urlsplit(uri)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
    elif parts.scheme == "s3":
        path = folder / "chart.tgz"
        parent = uri.rsplit("/", 1)[0]
        try:
            open_store(parent).download(uri, path)
        except Exception as exc:
            raise RenderError(f"chart {uri} cannot be fetched: {exc}") from None
    else:
        raise RenderError(f"chart {uri}: only file:// and s3:// artifacts can be fetched")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RenderError(f"chart {uri} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_CHART_BYTES:
        raise RenderError(f"chart {uri} is larger than {MAX_CHART_BYTES} bytes")
    if hashlib.sha256(data).hexdigest() != expected:
        raise RenderError(f"chart {uri} does not match its digest {digest}: refusing it")
    local = folder / "verified.tgz"
    local.write_bytes(data)
    return local


def _render_chart(archive: Path, values: dict[str, Any], name: str, namespace: str) -> dict:
    import helm_python as helm

    try:
        chart = helm.Chart.load(str(archive))
        return dict(chart.render(values, name=name, namespace=namespace, is_install=True))
    except helm.HelmError as exc:
        raise RenderError(f"helm render failed: {exc}") from None


def _objects(manifests: dict[str, str], cname: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for template in sorted(manifests):
        if not template.endswith((".yaml", ".yml")) or "/tests/" in template:
            continue  # NOTES.txt, helpers, and `helm test` hooks are not part of a release
        try:
            docs = list(yaml.safe_load_all(manifests[template]))
        except yaml.YAMLError as exc:
            raise RenderError(f"component {cname}: {template} is not YAML: {exc}") from None
        for doc in docs:
            if not doc:
                continue
            if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("metadata"):
                raise RenderError(f"component {cname}: {template} renders a non-object")
            out.append((template, doc))
    return out


def adopt(
    objects: list[tuple[str, dict[str, Any]]],
    *,
    instance: str,
    namespace: str,
    revision: int,
    cname: str,
) -> list[dict[str, Any]]:
    """Chart objects as opsline objects: checked, namespaced, labelled as ours."""
    ours = {MANAGED_BY: OPSLINE, **selector_labels(instance, cname)}
    adopted: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for template, obj in objects:
        kind, name = str(obj["kind"]), str(obj["metadata"].get("name") or "")
        where = f"component {cname}: {kind} {name or '(no name)'} from {template}"
        if kind in CLUSTER_SCOPED:
            raise RenderError(
                f"{where} is cluster-scoped; opsline installs an instance into one namespace "
                "(install cluster-wide objects separately)"
            )
        if kind not in KINDS:
            managed = ", ".join(KINDS)
            raise RenderError(f"{where}: kind {kind} is not one opsline manages ({managed})")
        if obj.get("apiVersion") != API_VERSIONS[kind]:
            want = API_VERSIONS[kind]
            raise RenderError(f"{where}: apiVersion {obj.get('apiVersion')}, want {want}")
        if not name:
            raise RenderError(f"{where}: no metadata.name")
        if (kind, name) in seen:
            raise RenderError(f"{where}: rendered twice")
        seen.add((kind, name))
        meta = dict(obj["metadata"])
        wrong = meta.get("namespace")
        if wrong and wrong != namespace:
            raise RenderError(f"{where}: it asks for namespace {wrong}, the target is {namespace}")
        meta["namespace"] = namespace
        meta["labels"] = {**(meta.get("labels") or {}), **ours}
        meta["annotations"] = {**(meta.get("annotations") or {}), REVISION: str(revision)}
        adopted.append({**obj, "metadata": meta})
    if not adopted:
        raise RenderError(f"component {cname}: the chart renders no objects")
    adopted.sort(key=lambda o: INSTALL_ORDER.index(o["kind"]))
    return adopted


async def render_helm(
    instance: str, namespace: str, revision: int, release: dict[str, Any]
) -> list[dict[str, Any]]:
    """The objects of a helm component release (fetch, verify, render, adopt)."""
    release = _plain(release)
    spec, artifact = release.get("spec") or {}, release.get("artifact") or {}
    cname = str(spec.get("name") or "")
    if not artifact.get("uri") or not artifact.get("digest"):
        raise RenderError(f"component {cname}: no packaged chart (build the app first)")
    values = (spec.get("traits") or {}).get("values") or {}
    if not isinstance(values, dict):
        raise RenderError(f"component {cname}: traits.values must be a mapping")

    def work() -> list[tuple[str, dict[str, Any]]]:
        with tempfile.TemporaryDirectory(prefix="opsline-chart-") as tmp:
            archive = _fetch(str(artifact["uri"]), str(artifact["digest"]), Path(tmp))
            manifests = _render_chart(archive, values, object_name(instance, cname), namespace)
        return _objects(manifests, cname)

    objects = await asyncio.to_thread(work)
    return adopt(objects, instance=instance, namespace=namespace, revision=revision, cname=cname)
