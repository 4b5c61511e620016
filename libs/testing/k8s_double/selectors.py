"""Label selectors (`a=b,c!=d,e,!f,g in (x,y),h notin (z)`) and field selectors (`a.b=c`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from libs.testing.k8s_double.errors import ApiError, bad_request
from libs.testing.k8s_double.resources import ResourceType

_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\((.*)\)$")
_CMP = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_ORD = re.compile(rf"^({_KEY})\s*(>|<)\s*(-?\d+)$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if not has or value is None or not re.fullmatch(r"-?\d+", value):
            return False
        bound = int(self.values[0])
        return int(value) > bound if self.op == ">" else int(value) < bound


def _split_terms(selector: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    terms.append("".join(current))
    return [t.strip() for t in terms]


def parse_label_selector(selector: str | None) -> list[Requirement]:
    if not selector or not selector.strip():
        return []
    requirements = []
    for term in _split_terms(selector):
        if m := _SET.match(term):
            values = tuple(v.strip() for v in m.group(3).split(","))
            if not values or not all(re.fullmatch(_VALUE, v) for v in values) or values == ("",):
                raise _unparsable(term)
            requirements.append(Requirement(m.group(1), m.group(2), values))
        elif m := _CMP.match(term):
            op = "=" if m.group(2) in ("=", "==") else "!="
            requirements.append(Requirement(m.group(1), op, (m.group(3),)))
        elif m := _ORD.match(term):
            requirements.append(Requirement(m.group(1), m.group(2), (m.group(3),)))
        elif m := _EXISTS.match(term):
            requirements.append(Requirement(m.group(2), "!" if m.group(1) else "exists"))
        else:
            raise _unparsable(term)
    return requirements


def _unparsable(term: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {term!r}: invalid label selector")


def labels_match(obj: dict[str, Any], requirements: list[Requirement]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


def selector_requirements(selector: dict[str, Any] | None) -> list[Requirement]:
    """A metav1.LabelSelector (matchLabels + matchExpressions) as requirements."""
    if not selector:
        return []
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        reqs.append(
            Requirement(expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ()))
        )
    return reqs


# Field selectors: the server supports only a few fields per resource.
_COMMON_FIELDS = {"metadata.name", "metadata.namespace"}
_EXTRA_FIELDS = {
    "events": {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    "namespaces": {"status.phase"},
    "secrets": {"type"},
    "jobs": {"status.successful"},
    "pods": {"spec.nodeName", "spec.restartPolicy", "status.phase"},
}


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    op: str  # "=" or "!="
    value: str

    def matches(self, obj: dict[str, Any]) -> bool:
        actual = _field_value(obj, self.path)
        return (actual == self.value) == (self.op == "=")


def _field_value(obj: dict[str, Any], path: str) -> str:
    if path == "source":
        path = "source.component"
    if path == "status.successful":
        path = "status.succeeded"
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    return "" if current is None else str(current)


def parse_field_selector(rt: ResourceType, selector: str | None) -> list[FieldRequirement]:
    if not selector or not selector.strip():
        return []
    supported = _COMMON_FIELDS | _EXTRA_FIELDS.get(rt.plural, set())
    result = []
    for term in selector.split(","):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*", term)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        if m.group(1) not in supported:
            raise bad_request(f"field label not supported: {m.group(1)}")
        result.append(FieldRequirement(m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
    return result


def fields_match(obj: dict[str, Any], requirements: list[FieldRequirement]) -> bool:
    return all(r.matches(obj) for r in requirements)
