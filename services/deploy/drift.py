"""Drift: what runs on a cluster, compared with what the instance's current revision says.

Only the fields opsline sets are compared (a controller's defaults are not drift): each
object must exist, and a Deployment keeps its replicas (unless an HPA owns them), images
and environment. Helm components are compared with the objects their chart rendered to
when the revision was rolled out.
"""

from __future__ import annotations

from typing import Any

from services.deploy.kubernetes import render


def _containers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return {c.get("name", ""): c for c in spec.get("containers", [])}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e.get("name"): e.get("value") for e in container.get("env") or []}


def desired(
    request: dict[str, Any], release: dict[str, Any], revision: int
) -> list[dict[str, Any]]:
    """The objects a release of a revision stands for: what its chart rendered to (kept
    with the revision), or what it renders to. RenderError when it cannot render."""
    target = request.get("target", {})
    spec = release.get("spec") or {}
    if spec.get("type") == "helm":
        return list(request.get("rendered", {}).get(spec.get("name"), []))
    return render(request["instance"], target.get("namespace", "default"), revision, release)


def differences(request: dict[str, Any], revision: int, live: list[dict[str, Any]]) -> list[str]:
    """What differs between the desired objects of a revision and the live ones."""
    namespace = request.get("target", {}).get("namespace", "default")
    found = {(o.get("kind"), o.get("metadata", {}).get("name")): o for o in live}
    out: list[str] = []
    for release in request.get("components", []):
        for want in desired(request, release, revision):
            key = (want["kind"], want["metadata"]["name"])
            have = found.get(key)
            where = f"{key[0]} {namespace}/{key[1]}"
            if have is None:
                out.append(f"{where} is missing")
                continue
            if want["kind"] == "ConfigMap" and have.get("data") != want.get("data"):
                out.append(f"{where}: data differs")
            if want["kind"] != "Deployment":
                continue
            wanted_replicas = want.get("spec", {}).get("replicas")
            live_replicas = have.get("spec", {}).get("replicas")
            if wanted_replicas is not None and live_replicas != wanted_replicas:
                out.append(f"{where}: replicas {live_replicas}, want {wanted_replicas}")
            live_containers = _containers(have)
            for name, container in _containers(want).items():
                running = live_containers.get(name)
                if running is None:
                    out.append(f"{where}: container {name} is missing")
                    continue
                if running.get("image") != container.get("image"):
                    out.append(
                        f"{where}: container {name} runs {running.get('image')}, "
                        f"want {container.get('image')}"
                    )
                if _env(running) != _env(container):
                    out.append(f"{where}: container {name} environment differs")
    return out
