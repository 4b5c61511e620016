"""Drift: the live objects against the desired revision, field by field."""

from __future__ import annotations

import copy

from services.deploy.drift import differences
from services.deploy.kubernetes import render

REQUEST = {
    "instance": "shop-prod",
    "target": {"cluster": "k8s", "namespace": "shop"},
    "components": [
        {
            "spec": {
                "name": "web",
                "type": "microservice",
                "source": {"image": "r/web@sha256:" + "a" * 64},
                "traits": {
                    "replicas": 2,
                    "env": {"MODE": "one"},
                    "ports": [{"name": "http", "port": 8080}],
                },
            },
            "artifact": {"kind": "image", "uri": "r/web@sha256:" + "a" * 64},
        }
    ],
}


def _live() -> list[dict]:
    return copy.deepcopy(render("shop-prod", "shop", 3, REQUEST["components"][0]))


def test_in_sync_then_each_kind_of_drift() -> None:
    assert differences(REQUEST, 3, _live()) == []
    live = _live()
    deployment = next(o for o in live if o["kind"] == "Deployment")
    deployment["spec"]["replicas"] = 5
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "r/web:hotfix"
    container["env"] = [{"name": "MODE", "value": "two"}]
    found = differences(REQUEST, 3, live)
    assert found == [
        "Deployment shop/shop-prod-web: replicas 5, want 2",
        f"Deployment shop/shop-prod-web: container web runs r/web:hotfix, want "
        f"r/web@sha256:{'a' * 64}",
        "Deployment shop/shop-prod-web: container web environment differs",
    ]
    missing = [o for o in _live() if o["kind"] != "Service"]
    assert differences(REQUEST, 3, missing) == ["Service shop/shop-prod-web is missing"]
