"""Render the Helm chart offline with the Helm SDK and pick objects out of it."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from kubernetes_validate import utils as kv_utils

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "opsline"
BYO_VALUES = ROOT / "deploy" / "helm" / "examples" / "bring-your-own.yaml"
RELEASE, NAMESPACE = "opsline", "ops"
OLDEST_KUBE = (1, 27)


def byo_values() -> dict[str, Any]:
    with BYO_VALUES.open() as f:
        return yaml.safe_load(f)


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A deep merge of two values trees (override wins), as helm's -f a -f b does."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders (NOTES.txt left out)."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return [
        doc
        for path, text in sorted(files.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def notes(values: dict[str, Any] | None = None) -> str:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return next(text for path, text in files.items() if path.endswith("NOTES.txt"))


def kube_versions() -> list[str]:
    """Every Kubernetes version kubernetes-validate has schemas for, from the oldest we support."""
    versions = {tuple(int(p) for p in v.split(".")[:2]) for v in kv_utils.all_versions()}
    return [f"{a}.{b}.0" for a, b in sorted(versions) if (a, b) >= OLDEST_KUBE]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def env_list(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return container(deployment).get("env") or []


REFERENCE = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(env: list[dict[str, Any]], secrets: dict[str, str]) -> dict[str, str]:
    """The container's environment as Kubernetes would set it: $(VAR) expanded from earlier
    variables, secretKeyRef values taken from `secrets` ("<secret>/<key>" → value)."""
    out: dict[str, str] = {}
    for item in env:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            out[item["name"]] = secrets.get(f"{ref['name']}/{ref['key']}", f"<{ref['key']}>")
        else:
            value = str(item.get("value", ""))
            out[item["name"]] = REFERENCE.sub(lambda m: out.get(m[1], m[0]), value)
    return out
