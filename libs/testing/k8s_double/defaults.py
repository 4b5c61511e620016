"""Per-type defaulting, allocation (cluster IPs, node ports) and validation (422 Invalid)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from libs.testing.k8s_double.errors import Cause, bad_request, invalid
from libs.testing.k8s_double.resources import ResourceType
from libs.testing.k8s_double.selectors import labels_match, selector_requirements

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)

INITIAL_STATUS: dict[str, dict[str, Any]] = {
    "namespaces": {"phase": "Active"},
    "services": {"loadBalancer": {}},
    "deployments": {},
    "jobs": {},
    "ingresses": {"loadBalancer": {}},
    "horizontalpodautoscalers": {"desiredReplicas": 0},
    "pods": {"phase": "Pending", "qosClass": "BestEffort"},
}


class Allocator:
    """Cluster IPs from 10.96.0.0/12 and node ports from 30000-32767, never reused."""

    def __init__(self) -> None:
        self._ip = 10
        self._port = 30000

    def cluster_ip(self) -> str:
        self._ip += 1
        return f"10.96.{self._ip // 256}.{self._ip % 256}"

    def node_port(self) -> int:
        self._port += 1
        return self._port


# ------------------------------------------------------------------------------ defaulting


def _pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        probe.setdefault(key, value)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("scheme", "HTTP")
        probe["httpGet"].setdefault("path", "/")


def _default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(container, dict):
            continue
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("imagePullPolicy", _pull_policy(str(container.get("image") or "")))
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            _default_probe(container.get(probe))
        for env in container.get("env") or []:
            field_ref = ((env or {}).get("valueFrom") or {}).get("fieldRef")
            if isinstance(field_ref, dict):
                field_ref.setdefault("apiVersion", "v1")


def _template_spec(obj: dict[str, Any]) -> dict[str, Any]:
    template = obj.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("metadata", {})
    return template.setdefault("spec", {})  # type: ignore[no-any-return]


def apply_defaults(
    rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, alloc: Allocator
) -> None:
    """Fill in what the API server defaults (and allocates) on every write."""
    meta = obj["metadata"]
    spec = obj.get("spec")
    if rt.plural == "namespaces":
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    elif rt.plural == "secrets":
        _normalize_secret(obj)
    elif rt.plural == "deployments":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        _default_pod_spec(_template_spec(obj))
    elif rt.plural == "jobs":
        _default_job(obj)
    elif rt.plural == "pods" and isinstance(spec, dict):
        _default_pod_spec(spec)
    elif rt.plural == "services":
        _default_service(obj, old, alloc)
    elif rt.plural == "horizontalpodautoscalers" and isinstance(spec, dict):
        spec.setdefault("minReplicas", 1)
        if not spec.get("metrics"):
            spec["metrics"] = [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ]


def _default_job(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    uid, name = obj["metadata"]["uid"], obj["metadata"]["name"]
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    if not spec.get("manualSelector"):
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
        labels.setdefault("batch.kubernetes.io/controller-uid", uid)
        labels.setdefault("batch.kubernetes.io/job-name", name)
        labels.setdefault("controller-uid", uid)
        labels.setdefault("job-name", name)
    _default_pod_spec(_template_spec(obj))


def _default_service(obj: dict[str, Any], old: dict[str, Any] | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    old_spec = (old or {}).get("spec") or {}
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        for key in ("clusterIP", "clusterIPs"):
            if not spec.get(key) and old_spec.get(key):
                spec[key] = old_spec[key]
        if not spec.get("clusterIP"):
            spec["clusterIP"] = (spec.get("clusterIPs") or [None])[0] or alloc.cluster_ip()
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        if spec["clusterIP"] != "None":
            spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    old_ports = {p.get("port"): p for p in old_spec.get("ports") or [] if isinstance(p, dict)}
    for port in spec.get("ports") or []:
        if not isinstance(port, dict):
            continue
        port.setdefault("protocol", "TCP")
        if "port" in port:
            port.setdefault("targetPort", port["port"])
        if spec["type"] in ("NodePort", "LoadBalancer") and not port.get("nodePort"):
            port["nodePort"] = old_ports.get(port.get("port"), {}).get("nodePort") or (
                alloc.node_port()
            )
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)


def _normalize_secret(obj: dict[str, Any]) -> None:
    obj.setdefault("type", "Opaque")
    data = obj.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as e:
            raise bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data '
                f"at input byte 0 (key {key!r})"
            ) from e
    string_data = obj.pop("stringData", None) or {}
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        obj["data"] = data


# ------------------------------------------------------------------------------ validation


def _check_name(rt: ResourceType, name: Any) -> list[Cause]:
    if not name:
        return [Cause("FieldValueRequired", "metadata.name", "name or generateName is required")]
    if rt.plural in ("namespaces",):
        pattern, message, limit = _DNS_LABEL, _LABEL_MSG, 63
    elif rt.plural == "services":
        pattern, message, limit = _DNS_1035, _1035_MSG, 63
    elif rt.plural == "events":
        return []
    else:
        pattern, message, limit = _SUBDOMAIN, _SUBDOMAIN_MSG, 253
    if len(name) > limit:
        return [
            Cause(
                "FieldValueInvalid",
                "metadata.name",
                f"must be no more than {limit} characters",
                name,
            )
        ]
    if not pattern.match(name):
        return [Cause("FieldValueInvalid", "metadata.name", message, name)]
    return []


def _check_labels(labels: Any, where: str) -> list[Cause]:
    causes = []
    for key, value in (labels or {}).items():
        prefix, _, short = key.rpartition("/")
        if (
            not _LABEL_NAME.match(short)
            or len(short) > 63
            or (prefix and not _SUBDOMAIN.match(prefix))
        ):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    where,
                    "name part must consist of alphanumeric characters, '-', '_' or '.'",
                    key,
                )
            )
        if not isinstance(value, str):
            raise bad_request(
                f"json: cannot unmarshal {type(value).__name__} into Go struct "
                f"field ObjectMeta.{where.rsplit('.', 1)[-1]} of type string"
            )
        if len(value) > 63:
            causes.append(
                Cause("FieldValueInvalid", where, "must be no more than 63 characters", value)
            )
        elif not _LABEL_VALUE.match(value):
            causes.append(Cause("FieldValueInvalid", where, _LABEL_VALUE_MSG, value))
    return causes


def _check_pod_spec(spec: Any, where: str, *, job: bool = False) -> list[Cause]:
    if not isinstance(spec, dict) or not spec.get("containers"):
        return [Cause("FieldValueRequired", f"{where}.containers")]
    causes = []
    seen: set[str] = set()
    for i, c in enumerate(spec["containers"]):
        at = f"{where}.containers[{i}]"
        name = c.get("name") if isinstance(c, dict) else None
        if not name:
            causes.append(Cause("FieldValueRequired", f"{at}.name"))
        elif not _DNS_LABEL.match(name):
            causes.append(Cause("FieldValueInvalid", f"{at}.name", _LABEL_MSG, name))
        elif name in seen:
            causes.append(Cause("FieldValueDuplicate", f"{at}.name", "", name))
        seen.add(str(name))
        if isinstance(c, dict) and not c.get("image"):
            causes.append(Cause("FieldValueRequired", f"{at}.image"))
    policy = spec.get("restartPolicy")
    if job and policy not in ("OnFailure", "Never"):
        causes.append(
            Cause(
                "FieldValueNotSupported",
                f"{where}.restartPolicy",
                'supported values: "OnFailure", "Never"',
                policy,
            )
        )
    return causes


def _check_deployment(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = []
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        causes.append(Cause("FieldValueRequired", "spec.selector"))
    elif not selector_requirements(selector):
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.selector",
                "empty selector is invalid for deployment",
                selector,
            )
        )
    elif not labels_match({"metadata": {"labels": labels}}, selector_requirements(selector)):
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.template.metadata.labels",
                "`selector` does not match template `labels`",
                labels,
            )
        )
    if old is not None and selector and selector != (old.get("spec") or {}).get("selector"):
        causes.append(Cause("FieldValueInvalid", "spec.selector", "field is immutable", selector))
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        causes.append(
            Cause(
                "FieldValueInvalid", "spec.replicas", "must be greater than or equal to 0", replicas
            )
        )
    causes += _check_labels(labels, "spec.template.metadata.labels")
    causes += _check_pod_spec(template.get("spec"), "spec.template.spec")
    return causes


def _check_job(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    causes = _check_pod_spec(template.get("spec"), "spec.template.spec", job=True)
    if old is not None and template != (old.get("spec") or {}).get("template"):
        causes.append(Cause("FieldValueInvalid", "spec.template", "field is immutable"))
    return causes


def _check_service(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = []
    ports = spec.get("ports") or []
    if not ports and spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(Cause("FieldValueRequired", "spec.ports"))
    for i, port in enumerate(ports):
        number = port.get("port") if isinstance(port, dict) else None
        if not isinstance(number, int) or not 0 < number < 65536:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"spec.ports[{i}].port",
                    "must be between 1 and 65535, inclusive",
                    number,
                )
            )
        if len(ports) > 1 and isinstance(port, dict) and not port.get("name"):
            causes.append(Cause("FieldValueRequired", f"spec.ports[{i}].name"))
    old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
    if old_ip and spec.get("clusterIP") != old_ip:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.clusterIPs[0]",
                "may not change once set",
                spec.get("clusterIP"),
            )
        )
    return causes


def _check_ingress(obj: dict[str, Any]) -> list[Cause]:
    causes = []
    for i, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
        for j, path in enumerate(((rule or {}).get("http") or {}).get("paths") or []):
            at = f"spec.rules[{i}].http.paths[{j}]"
            if not path.get("pathType"):
                causes.append(
                    Cause("FieldValueRequired", f"{at}.pathType", "pathType must be specified")
                )
            if not path.get("backend"):
                causes.append(Cause("FieldValueRequired", f"{at}.backend"))
    return causes


def _check_hpa(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = []
    if not spec.get("scaleTargetRef"):
        causes.append(Cause("FieldValueRequired", "spec.scaleTargetRef"))
    max_replicas = spec.get("maxReplicas")
    if not isinstance(max_replicas, int) or max_replicas < 1:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.maxReplicas",
                "must be greater than or equal to 1",
                max_replicas,
            )
        )
    elif isinstance(spec.get("minReplicas"), int) and spec["minReplicas"] > max_replicas:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.minReplicas",
                "must be less than or equal to maxReplicas",
                spec["minReplicas"],
            )
        )
    return causes


def validate(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    meta = obj.get("metadata") or {}
    causes = _check_name(rt, meta.get("name"))
    causes += _check_labels(meta.get("labels"), "metadata.labels")
    for key, value in (meta.get("annotations") or {}).items():
        if not isinstance(value, str):
            raise bad_request(
                f"json: cannot unmarshal {type(value).__name__} into Go struct "
                "field ObjectMeta.metadata.annotations of type string"
            )
        if not key:
            causes.append(Cause("FieldValueInvalid", "metadata.annotations", "empty key", key))
    if rt.plural in ("configmaps", "secrets"):
        for key, value in (obj.get("data") or {}).items():
            if not _CONFIG_KEY.match(key):
                causes.append(
                    Cause(
                        "FieldValueInvalid",
                        f"data[{key}]",
                        "a valid config key "
                        "must consist of alphanumeric characters, '-', '_' or '.'",
                        key,
                    )
                )
            if not isinstance(value, str):
                raise bad_request(
                    f'{rt.kind} in version "v1" cannot be handled as a {rt.kind}: json: cannot '
                    f"unmarshal {type(value).__name__} into Go struct field {rt.kind}.data of "
                    "type string"
                )
    if rt.plural == "deployments":
        causes += _check_deployment(obj, old)
    elif rt.plural == "jobs":
        causes += _check_job(obj, old)
    elif rt.plural == "services":
        causes += _check_service(obj, old)
    elif rt.plural == "ingresses":
        causes += _check_ingress(obj)
    elif rt.plural == "horizontalpodautoscalers":
        causes += _check_hpa(obj)
    elif rt.plural == "events" and not obj.get("involvedObject"):
        causes.append(Cause("FieldValueRequired", "involvedObject"))
    if causes:
        raise invalid(rt.kind, rt.group, str(meta.get("name") or ""), causes)
