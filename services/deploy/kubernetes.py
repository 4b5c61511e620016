"""The Kubernetes target: renders component releases into objects and rolls them out.

    target = KubernetesTarget(kubeconfig)               # a path, or the kubeconfig as a dict
    objects = render("shop", "demo", 3, component)   # pure: dicts, nothing sent
    await target.apply("demo", objects)                # namespace + server-side apply
    await target.wait("demo", objects, timeout=300)    # RolloutError when it goes wrong
    await target.prune("demo", "shop", {(o["kind"], o["metadata"]["name"]) for o in objects})
    await target.close()

Everything goes through kubernetes-asyncio's `ApiClient.call_api` with plain dicts (no
typed models: server-side apply wants exactly the fields we own, nothing defaulted).
Objects carry `app.kubernetes.io/managed-by: opsline`, `opsline.io/instance` and
`opsline.io/component` labels; prune/uninstall/live find them by the instance label.

Naming: every object of a component is `<instance>-<component>` (DNS-1123, at most 63
characters), except Jobs, which are `<instance>-<component>-r<revision>`: a Job's pod
template is immutable, so each revision runs its own Job and prune removes the old ones.
The `opsline.io/revision` annotation is on object metadata only, not the pod template,
so a revision that changes nothing in a component does not restart its pods.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shlex
from types import TracebackType
from typing import Any

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "opsline.io/instance"
COMPONENT = "opsline.io/component"
REVISION = "opsline.io/revision"
CONFIG_HASH = "opsline.io/config-sha256"
CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")
MAX_CONFIG_BYTES = 1_000_000
OPSLINE = "opsline"

APPLY_PATCH = "application/apply-patch+yaml"
PROGRESS_DEADLINE_SECONDS = 600

# kind -> (API path prefix, plural); also the order prune and uninstall delete in.
# The kinds beyond ConfigMap come from helm charts (services/deploy/charts.py); a cluster
# that does not serve one answers 404 to its listing, which is skipped.
KINDS: dict[str, tuple[str, str]] = {
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses"),
    "Service": ("/api/v1", "services"),
    "CronJob": ("/apis/batch/v1", "cronjobs"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "DaemonSet": ("/apis/apps/v1", "daemonsets"),
    "Job": ("/apis/batch/v1", "jobs"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
}
API_VERSIONS = {
    kind: prefix.removeprefix("/apis/").removeprefix("/api/") for kind, (prefix, _) in KINDS.items()
}
_RESPONSE_TYPES = {200: "object", 201: "object", 202: "object"}


class RenderError(ValueError):
    """The component cannot be turned into Kubernetes objects."""


class KubernetesError(Exception):
    """The API server refused a request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class RolloutError(Exception):
    """A rollout failed or did not finish in time; `reason` says which, where and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------- rendering


def _plain(value: Any) -> Any:
    """Protobuf Structs turn every number into a float: 2.0 means 2 (recursively)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _dns_label(text: str, limit: int = 63) -> str:
    """A DNS-1123 label (starting with a letter, so Services accept it too); names longer
    than `limit` are cut and end in a short hash of the whole so they stay unique."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name) or "x"
    if not name[0].isalpha():
        name = f"o-{name}"
    if len(name) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        name = f"{name[: limit - 9].rstrip('-')}-{digest}"
    return name


def _label_value(text: str) -> str:
    """A label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    if len(value) > 63:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        value = f"{value[:54].rstrip('-._')}-{digest}"
    return value


def object_name(instance: str, component: str) -> str:
    return _dns_label(f"{instance}-{component}")


def selector_labels(instance: str, component: str) -> dict[str, str]:
    return {INSTANCE: _label_value(instance), COMPONENT: _label_value(component)}


def instance_selector(instance: str) -> str:
    return f"{MANAGED_BY}={OPSLINE},{INSTANCE}={_label_value(instance)}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(_plain(value))


def _env(raw: Any) -> list[dict[str, Any]]:
    if not raw:
        return []
    if isinstance(raw, dict):
        return [{"name": str(k), "value": _scalar(v)} for k, v in raw.items()]
    if isinstance(raw, list):
        out = []
        for item in raw:
            if not isinstance(item, dict) or "name" not in item:
                raise RenderError(f"traits.env entries need a name: {item!r}")
            entry = dict(item)
            if "value" in entry:
                entry["value"] = _scalar(entry["value"])
            out.append(entry)
        return out
    raise RenderError(f"traits.env must be a mapping or a list, not {type(raw).__name__}")


def _ports(raw: Any) -> list[dict[str, Any]]:
    """Normalized ports: name (IANA service name), port, protocol."""
    out: list[dict[str, Any]] = []
    for item in raw or []:
        port = item.get("port") if isinstance(item, dict) else item
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise RenderError(f"traits.ports: bad port {item!r}")
        name = item.get("name") if isinstance(item, dict) else None
        name = _dns_label(str(name), 15) if name else f"p{port}"
        protocol = (item.get("protocol") if isinstance(item, dict) else None) or "TCP"
        out.append({"name": name, "port": port, "protocol": str(protocol).upper()})
    return out


def _quantities(raw: dict[str, Any]) -> dict[str, str]:
    return {str(k): _scalar(v) for k, v in raw.items()}


def _resources(raw: Any) -> dict[str, Any]:
    """`{"requests": {...}, "limits": {...}}` as is, or a flat `{"cpu": ..}` as requests."""
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise RenderError("traits.resources must be a mapping")
    if "requests" in raw or "limits" in raw:
        return {k: _quantities(raw[k]) for k in ("requests", "limits") if raw.get(k)}
    return {"requests": _quantities(raw)}


def _image(spec: dict[str, Any], artifact: dict[str, Any]) -> str:
    if artifact.get("kind") == "image" and artifact.get("uri"):
        return str(artifact["uri"])
    image = (spec.get("source") or {}).get("image")
    if not image:
        raise RenderError(f"component {spec.get('name')}: no image (artifact or source.image)")
    return str(image)


def _container(name: str, image: str, traits: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = {"name": _dns_label(name), "image": image}
    command = traits.get("command")
    if command:
        container["command"] = (
            [str(c) for c in command] if isinstance(command, list) else shlex.split(str(command))
        )
    if traits.get("args"):
        container["args"] = [_scalar(a) for a in traits["args"]]
    env = _env(traits.get("env"))
    if env:
        container["env"] = env
    ports = _ports(traits.get("ports"))
    if ports:
        container["ports"] = [
            {"name": p["name"], "containerPort": p["port"], "protocol": p["protocol"]}
            for p in ports
        ]
    resources = _resources(traits.get("resources"))
    if resources:
        container["resources"] = resources
    return container


def _deadline(raw: Any, cname: str) -> int:
    if raw is None:
        return PROGRESS_DEADLINE_SECONDS
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise RenderError(f"component {cname}: traits.progressDeadlineSeconds must be ≥ 1")
    return raw


def _config_map(raw: Any, cname: str, metadata: dict[str, Any]) -> dict[str, Any] | None:
    """`traits.config: {mountPath: /etc/app, files: {app.yaml: "..."}}` as a ConfigMap
    (with `_mount` and `_hash` for the caller to take out)."""
    if not raw:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("files"), dict) or not raw["files"]:
        raise RenderError(f"component {cname}: traits.config needs files: {{name: content}}")
    unknown = sorted(set(raw) - {"files", "mountPath"})
    if unknown:
        raise RenderError(f"component {cname}: traits.config has unknown keys {unknown}")
    mount = str(raw.get("mountPath") or f"/etc/opsline/{cname}")
    if not mount.startswith("/") or ".." in mount.split("/"):
        raise RenderError(f"component {cname}: traits.config.mountPath must be absolute")
    data: dict[str, str] = {}
    for key, content in raw["files"].items():
        if not isinstance(key, str) or not CONFIG_KEY.fullmatch(key) or key in (".", ".."):
            raise RenderError(
                f"component {cname}: traits.config.files: {key!r} is not a file name "
                "(letters, digits, '-', '_', '.')"
            )
        data[key] = content if isinstance(content, str) else _scalar(content)
    size = sum(len(k) + len(v.encode()) for k, v in data.items())
    if size > MAX_CONFIG_BYTES:
        raise RenderError(
            f"component {cname}: traits.config.files hold {size} bytes; a ConfigMap holds "
            f"at most {MAX_CONFIG_BYTES}"
        )
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": data,
        "_mount": mount,
        "_hash": digest[:16],
    }


def render(
    instance: str, namespace: str, revision: int, component: dict[str, Any]
) -> list[dict[str, Any]]:
    """Turn one component release into the Kubernetes objects that run it (pure)."""
    component = _plain(component)
    spec = component.get("spec") or {}
    artifact = component.get("artifact") or {}
    cname = spec.get("name")
    if not cname:
        raise RenderError("component without spec.name")
    ctype = spec.get("type") or "microservice"
    traits = spec.get("traits") or {}
    name = object_name(instance, cname)
    selector = selector_labels(instance, cname)
    labels = {MANAGED_BY: OPSLINE, **selector}

    def meta(object_name: str = name) -> dict[str, Any]:
        return {
            "name": object_name,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": {REVISION: str(revision)},
        }

    image = _image(spec, artifact)
    container = _container(cname, image, traits)
    config_map = _config_map(traits.get("config"), cname, meta())
    pod_meta: dict[str, Any] = {"labels": dict(labels)}
    pod_extra: dict[str, Any] = {}
    if config_map is not None:
        container["volumeMounts"] = [{"name": "config", "mountPath": config_map.pop("_mount")}]
        pod_extra["volumes"] = [{"name": "config", "configMap": {"name": name}}]
        # a change of the files changes the pod template, so the pods restart with them
        pod_meta["annotations"] = {CONFIG_HASH: config_map.pop("_hash")}
    extras = [config_map] if config_map is not None else []
    if ctype == "job":
        job_spec: dict[str, Any] = {
            "backoffLimit": int(traits.get("backoffLimit", 3)),
            "template": {
                "metadata": pod_meta,
                "spec": {"restartPolicy": "Never", "containers": [container], **pod_extra},
            },
        }
        if traits.get("activeDeadlineSeconds"):
            job_spec["activeDeadlineSeconds"] = int(traits["activeDeadlineSeconds"])
        return [
            *extras,
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": meta(_dns_label(f"{instance}-{cname}-r{revision}")),
                "spec": job_spec,
            },
        ]
    if ctype != "microservice":
        raise RenderError(f"component {cname}: type {ctype!r} is not supported on Kubernetes")

    autoscale = traits.get("autoscale") or None
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": dict(selector)},
        "progressDeadlineSeconds": _deadline(traits.get("progressDeadlineSeconds"), cname),
        "template": {"metadata": pod_meta, "spec": {"containers": [container], **pod_extra}},
    }
    if not autoscale:  # with an HPA, the HPA owns spec.replicas
        replicas = traits.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise RenderError(f"component {cname}: bad replicas {replicas!r}")
        deployment_spec["replicas"] = replicas
    objects: list[dict[str, Any]] = [
        *extras,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(),
            "spec": deployment_spec,
        },
    ]
    ports = _ports(traits.get("ports"))
    if ports:  # a ClusterIP Service needs at least one port
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta(),
                "spec": {
                    "type": "ClusterIP",
                    "selector": dict(selector),
                    "ports": [
                        {
                            "name": p["name"],
                            "port": p["port"],
                            "targetPort": p["name"],
                            "protocol": p["protocol"],
                        }
                        for p in ports
                    ],
                },
            }
        )
    if autoscale:
        low = int(autoscale.get("min", traits.get("replicas", 1)))
        high = int(autoscale.get("max", low))
        if low < 1 or high < low:
            raise RenderError(f"component {cname}: bad autoscale min/max {low}/{high}")
        hpa_spec: dict[str, Any] = {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": low,
            "maxReplicas": high,
        }
        if autoscale.get("cpu"):
            hpa_spec["metrics"] = [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": int(autoscale["cpu"]),
                        },
                    },
                }
            ]
        objects.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": meta(),
                "spec": hpa_spec,
            }
        )
    ingress = traits.get("ingress") or None
    if ingress:
        if not ports:
            raise RenderError(f"component {cname}: traits.ingress needs traits.ports")
        port = ingress.get("port") or ports[0]["port"]
        backend_port = {"name": port} if isinstance(port, str) else {"number": int(port)}
        rule: dict[str, Any] = {
            "http": {
                "paths": [
                    {
                        "path": str(ingress.get("path") or "/"),
                        "pathType": str(ingress.get("pathType") or "Prefix"),
                        "backend": {"service": {"name": name, "port": backend_port}},
                    }
                ]
            }
        }
        if ingress.get("host"):
            rule = {"host": str(ingress["host"]), **rule}
        ingress_spec: dict[str, Any] = {"rules": [rule]}
        if ingress.get("className"):
            ingress_spec["ingressClassName"] = str(ingress["className"])
        objects.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": meta(),
                "spec": ingress_spec,
            }
        )
    return objects


# ---------------------------------------------------------------------------- the target


def _describe(obj: dict[str, Any], namespace: str) -> tuple[str, str]:
    """(`component web`, `Deployment demo/shop-web`) for messages."""
    meta = obj.get("metadata") or {}
    component = (meta.get("labels") or {}).get(COMPONENT, "?")
    return f"component {component}", f"{obj.get('kind')} {namespace}/{meta.get('name')}"


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


class KubernetesTarget:
    def __init__(self, kubeconfig: str | dict[str, Any], *, field_manager: str = OPSLINE) -> None:
        self.kubeconfig = kubeconfig
        self.field_manager = field_manager
        self.poll_seconds = 0.1
        self._api: ApiClient | None = None
        self._lock = asyncio.Lock()

    render = staticmethod(render)

    async def __aenter__(self) -> KubernetesTarget:
        await self._client()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._api is not None:
            api, self._api = self._api, None
            await api.close()

    async def _client(self) -> ApiClient:
        async with self._lock:
            if self._api is None:
                configuration = Configuration()
                if isinstance(self.kubeconfig, dict):
                    await config.load_kube_config_from_dict(
                        self.kubeconfig, client_configuration=configuration
                    )
                else:
                    await config.load_kube_config(
                        config_file=str(self.kubeconfig), client_configuration=configuration
                    )
                self._api = ApiClient(configuration=configuration)
            return self._api

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        api = await self._client()
        try:
            result = await api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_types_map=_RESPONSE_TYPES,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=30,
            )
        except ApiException as exc:
            raise KubernetesError(exc.status or 0, _api_message(exc)) from None
        return result if isinstance(result, dict) else {}

    @staticmethod
    def _path(kind: str, namespace: str, name: str | None = None) -> str:
        if kind not in KINDS:
            raise ValueError(f"unsupported kind {kind!r}")
        prefix, plural = KINDS[kind]
        path = f"{prefix}/namespaces/{namespace}/{plural}"
        return f"{path}/{name}" if name else path

    # ------------------------------------------------------------------------ apply

    async def ensure_namespace(self, namespace: str) -> None:
        try:
            await self._call("GET", f"/api/v1/namespaces/{namespace}")
            return
        except KubernetesError as exc:
            if exc.status != 404:
                raise
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {MANAGED_BY: OPSLINE}},
        }
        try:
            await self._call("POST", "/api/v1/namespaces", body=body)
        except KubernetesError as exc:
            if exc.status != 409:
                raise

    async def apply(self, namespace: str, objects: list[dict[str, Any]]) -> None:
        """Create the namespace if needed, then server-side apply every object (forced)."""
        await self.ensure_namespace(namespace)
        for obj in objects:
            name = obj["metadata"]["name"]
            body = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
            try:
                await self._call(
                    "PATCH",
                    self._path(obj["kind"], namespace, name),
                    query={"fieldManager": self.field_manager, "force": "true"},
                    body=body,
                    content_type=APPLY_PATCH,
                )
            except KubernetesError as exc:
                raise KubernetesError(
                    exc.status, f"apply {obj['kind']} {namespace}/{name}: {exc.message}"
                ) from None

    # ------------------------------------------------------------------------ wait

    async def wait(self, namespace: str, objects: list[dict[str, Any]], *, timeout: float) -> None:
        """Until every Deployment is rolled out and every Job succeeded; RolloutError when
        one fails (deadline exceeded, Job failed) or `timeout` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = [o for o in objects if o.get("kind") in ("Deployment", "Job")]
        while pending:
            still: list[dict[str, Any]] = []
            for obj in pending:
                live = await self._get(obj["kind"], namespace, obj["metadata"]["name"])
                if live is None:
                    component, what = _describe(obj, namespace)
                    raise RolloutError(f"{component}: {what} does not exist")
                check = self._deployment_done if obj["kind"] == "Deployment" else self._job_done
                if not await check(namespace, obj, live):
                    still.append(obj)
            pending = still
            if not pending:
                return
            if loop.time() >= deadline:
                obj = pending[0]
                component, what = _describe(obj, namespace)
                cause = f"timed out after {timeout:g}s"
                raise RolloutError(
                    f"{component}: {what} did not become ready: {cause}"
                    + await self._last_warning(namespace, obj)
                )
            await asyncio.sleep(min(self.poll_seconds, max(0.0, deadline - loop.time())))

    async def _deployment_done(
        self, namespace: str, obj: dict[str, Any], live: dict[str, Any]
    ) -> bool:
        meta, spec, status = live["metadata"], live.get("spec") or {}, live.get("status") or {}
        if int(status.get("observedGeneration", 0)) < int(meta.get("generation", 1)):
            return False  # the controller has not seen this spec yet: conditions are stale
        progressing = _condition(status, "Progressing")
        if (
            progressing
            and progressing.get("status") == "False"
            and progressing.get("reason") == "ProgressDeadlineExceeded"
        ):
            component, what = _describe(obj, namespace)
            raise RolloutError(
                f"{component}: {what} did not become available: ProgressDeadlineExceeded"
                + await self._last_warning(namespace, obj)
            )
        want = int(spec.get("replicas", 1))
        updated = int(status.get("updatedReplicas", 0))
        return (
            updated == want
            and int(status.get("availableReplicas", 0)) == want
            and int(status.get("replicas", 0)) <= updated  # no old pods left
        )

    async def _job_done(self, namespace: str, obj: dict[str, Any], live: dict[str, Any]) -> bool:
        status = live.get("status") or {}
        failed = _condition(status, "Failed")
        if failed and failed.get("status") == "True":
            component, what = _describe(obj, namespace)
            cause = ": ".join(x for x in (failed.get("reason"), failed.get("message")) if x)
            raise RolloutError(f"{component}: {what} failed: {cause or 'Failed'}")
        return int(status.get("succeeded", 0)) >= 1

    async def _last_warning(self, namespace: str, obj: dict[str, Any]) -> str:
        """`; last event <reason>: <message>` for the newest Warning Event, or ``."""
        name = obj["metadata"]["name"]
        try:
            events = await self._call(
                "GET",
                f"/api/v1/namespaces/{namespace}/events",
                query={"fieldSelector": f"involvedObject.name={name}"},
            )
        except KubernetesError:
            return ""
        warnings = [
            e
            for e in events.get("items") or []
            if e.get("type") == "Warning"
            and (e.get("involvedObject") or {}).get("kind") in (None, obj["kind"])
        ]
        if not warnings:
            return ""

        def newest(event: dict[str, Any]) -> tuple[str, int]:
            stamp = (
                event.get("lastTimestamp")
                or event.get("eventTime")
                or (event.get("metadata") or {}).get("creationTimestamp")
                or ""
            )
            rv = str((event.get("metadata") or {}).get("resourceVersion") or "0")
            return (stamp, int(rv) if rv.isdigit() else 0)

        event = max(warnings, key=newest)
        return f"; last event {event.get('reason')}: {event.get('message')}"

    # ------------------------------------------------------------------------ reading

    async def version(self) -> str:
        """The API server's version (`v1.31.2`): proves the address and credentials work."""
        info = await self._call("GET", "/version")
        return str(info.get("gitVersion") or "unknown")

    async def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", self._path(kind, namespace, name))
        except KubernetesError as exc:
            if exc.status == 404:
                return None
            raise

    async def live(
        self, namespace: str, instance: str, kinds: set[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every object of the instance (of `kinds`, default all in KINDS), with apiVersion
        and kind set."""
        found: list[dict[str, Any]] = []
        for kind in KINDS:
            if kinds is not None and kind not in kinds:
                continue
            try:
                listed = await self._call(
                    "GET",
                    self._path(kind, namespace),
                    query={"labelSelector": instance_selector(instance)},
                )
            except KubernetesError as exc:
                if exc.status == 404:
                    continue
                raise
            for item in listed.get("items") or []:
                found.append({"apiVersion": API_VERSIONS[kind], "kind": kind, **item})
        return found

    # ------------------------------------------------------------------------ deleting

    async def _delete(self, kind: str, namespace: str, name: str) -> bool:
        try:
            await self._call(
                "DELETE",
                self._path(kind, namespace, name),
                query={"propagationPolicy": "Background"},
            )
        except KubernetesError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def prune(
        self,
        namespace: str,
        instance: str,
        keep: set[tuple[str, str]],
        kinds: set[str] | None = None,
    ) -> list[str]:
        """Delete the instance's objects (of `kinds`, default all) whose (kind, name) is not
        in `keep`: `Kind/name`s."""
        deleted: list[str] = []
        for obj in await self.live(namespace, instance, kinds):
            kind, name = obj["kind"], obj["metadata"]["name"]
            if (kind, name) not in keep and await self._delete(kind, namespace, name):
                deleted.append(f"{kind}/{name}")
        return deleted

    async def uninstall(self, namespace: str, instance: str) -> list[str]:
        """Delete every object of the instance (the namespace stays): `Kind/name`s."""
        return await self.prune(namespace, instance, set())


def _api_message(exc: ApiException) -> str:
    """The Status message of a refused request, else its body or HTTP reason."""
    raw: Any = exc.body
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if isinstance(text, str) and text:
        try:
            parsed = json.loads(text)
        except ValueError:
            return text[:500]
        if isinstance(parsed, dict) and parsed.get("message"):
            return str(parsed["message"])
        return text[:500]
    return str(exc.reason or "error")
