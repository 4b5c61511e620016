"""Deploy to a Kubernetes cluster (the API double, through kubernetes-asyncio): launch,
drift shown and cleared, a failed rollout rolled back with its reason, uninstall."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from libs.testing.k8s_double import K8sDouble
from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth, unique
from tests.e2e.test_deploy import _build, _deploy, _wait

pytestmark = pytest.mark.e2e
IMAGE = "registry.example.com/shop/web@sha256:" + "ab" * 32

SPEC = """\
apiVersion: opsline.io/v1
kind: App
meta: {{name: {name}, team: e2e}}
components:
  - name: web
    type: microservice
    source: {{image: "{image}"}}
    traits:
      replicas: 2
      env: {{MODE: one}}
      ports: [{{name: http, port: 8080}}]
"""

LAUNCH = """\
apiVersion: opsline.io/v1
kind: Launch
app: {name}
instance: {name}-prod
target: {{cluster: k8s, namespace: shop, stage: prod}}
components:
  web: {{traits: {{env: {{MODE: {mode}}}}}}}
rollback: {{automatic: true}}
"""


async def _scale(stack: RunningStack, name: str, replicas: int) -> None:
    from kubernetes_asyncio import client, config

    api = await config.new_client_from_config(config_file=str(stack.home / "k8s.kubeconfig"))
    async with api:
        await client.AppsV1Api(api).patch_namespaced_deployment(
            name,
            "shop",
            {"spec": {"replicas": replicas}},
            _content_type="application/merge-patch+json",
        )


async def _instance_state(
    client: httpx.AsyncClient, gw: str, instance: str, headers: dict, want: str
) -> None:
    state = ""
    for _ in range(60):
        state = (await client.get(f"{gw}/v1/instances/{instance}", headers=headers)).json()["state"]
        if state == want:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"instance {instance} is {state}, not {want}")


async def test_kubernetes_deploy_rollback_and_uninstall(
    stack: RunningStack, k8s: K8sDouble
) -> None:
    gw, headers = stack.stack.gateway_url, auth(stack)
    name = unique("kube").replace("_", "-")
    async with httpx.AsyncClient(timeout=30) as client:
        applied = await client.post(
            f"{gw}/v1/apps:apply",
            content=SPEC.format(name=name, image=IMAGE).encode(),
            headers={**headers, "content-type": "application/yaml"},
        )
        assert applied.status_code == 200, applied.text
        await _build(client, gw, name, headers)

        first = await _deploy(client, gw, LAUNCH.format(name=name, mode="one"), headers)
        assert first["state"] == "SUCCESS", first
        deployment = k8s.get("deployments", "shop", f"{name}-prod-web")
        assert deployment is not None
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == IMAGE
        assert {"name": "MODE", "value": "one"} in container["env"]
        assert deployment["status"]["availableReplicas"] == 2
        assert k8s.get("services", "shop", f"{name}-prod-web") is not None

        # someone scales it by hand: the instance shows OutOfSync, then in sync again
        await _scale(stack, f"{name}-prod-web", 5)
        await _instance_state(client, gw, f"{name}-prod", headers, "OutOfSync")
        await _scale(stack, f"{name}-prod-web", 2)
        await _instance_state(client, gw, f"{name}-prod", headers, "SUCCESS")

        k8s.fail_rollout(
            "shop",
            f"{name}-prod-web",
            reason="CrashLoopBackOff",
            message="back-off restarting failed container web",
        )
        broken = await _deploy(client, gw, LAUNCH.format(name=name, mode="two"), headers)
        assert broken["state"] == "ROLLED_BACK", broken
        assert "ProgressDeadlineExceeded" in broken["reason"]
        assert "back-off restarting failed container web" in broken["reason"]
        live = k8s.get("deployments", "shop", f"{name}-prod-web")
        env = live["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "MODE", "value": "one"} in env  # the last good revision again

        gone = await client.delete(f"{gw}/v1/instances/{name}-prod", headers=headers)
        done = await _wait(client, gw, gone.json()["id"], headers)
        assert done["state"] == "SUCCESS", done
    assert k8s.get("deployments", "shop", f"{name}-prod-web") is None
    assert k8s.get("services", "shop", f"{name}-prod-web") is None
