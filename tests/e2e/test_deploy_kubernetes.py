"""Deploy to a Kubernetes cluster (the API double, through kubernetes-asyncio): launch,
a failed rollout rolled back automatically with its reason, uninstall."""

from __future__ import annotations

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
