"""Operating deployments through the gateway: clusters registered over the API, an
operator retrying one that waits (WAIT_FOR_OP), terminating one in progress, a deploy
worker killed mid-rollout, and a helm component rolled out and uninstalled."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import yaml

from libs.testing.k8s_double import K8sDouble
from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth, unique
from tests.e2e.test_deploy import _build, _deploy, _wait
from tests.e2e.test_deploy_kubernetes import IMAGE

pytestmark = pytest.mark.e2e

SPEC = """\
apiVersion: opsline.io/v1
kind: App
meta: {{name: {name}, team: e2e}}
components:
  - name: web
    type: microservice
    source: {{image: "{image}"}}
    traits:
      replicas: 1
      # a stuck rollout stays stuck for 20000 s x the double's time scale: a minute
      progressDeadlineSeconds: {deadline}
      config: {{files: {{app.conf: "mode=one"}}}}
"""

LAUNCH = """\
apiVersion: opsline.io/v1
kind: Launch
app: {name}
instance: {name}-live
target: {{cluster: {cluster}, namespace: ops, stage: live}}
"""

HELM_SPEC = """\
apiVersion: opsline.io/v1
kind: App
meta: {{name: {name}, team: e2e}}
components:
  - name: cache
    type: helm
    source: {{chart: "{chart}"}}
    traits: {{values: {{replicas: 2}}}}
"""

CHART_TEMPLATE = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: {{ .Release.Name }}}
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}}}
    spec: {containers: [{name: cache, image: "redis:7"}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: {{ .Release.Name }}-settings}
data: {maxmemory: 64mb}
"""


async def _until(
    client: httpx.AsyncClient, url: str, headers: dict, want: set[str], seconds: float = 90
) -> dict:
    deadline = time.monotonic() + seconds
    body: dict = {}
    while time.monotonic() < deadline:
        body = (await client.get(url, headers=headers)).json()
        if body.get("state") in want:
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} is {body.get('state')}, not {want}: {body}")


async def _app(client: httpx.AsyncClient, gw: str, headers: dict, spec: str, name: str) -> None:
    applied = await client.post(
        f"{gw}/v1/apps:apply",
        content=spec.encode(),
        headers={**headers, "content-type": "application/yaml"},
    )
    assert applied.status_code == 200, applied.text
    await _build(client, gw, name, headers)


async def _launch(client: httpx.AsyncClient, gw: str, headers: dict, text: str) -> str:
    response = await client.post(
        f"{gw}/v1/deployments",
        content=text.encode(),
        headers={**headers, "content-type": "application/yaml"},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def test_clusters_are_registered_checked_and_never_shown_back(
    stack: RunningStack, k8s: K8sDouble, tmp_path: Path
) -> None:
    gw, headers = stack.stack.gateway_url, auth(stack)
    text = k8s.kubeconfig(tmp_path / "kubeconfig").read_text()
    async with httpx.AsyncClient(timeout=30) as client:
        assert (
            await client.put(f"{gw}/v1/clusters/spare", json={"kubeconfig": text})
        ).status_code == 401
        created = await client.put(
            f"{gw}/v1/clusters/spare", json={"kubeconfig": text}, headers=headers
        )
        assert created.status_code == 201, created.text
        assert created.json()["reachable"] is True and created.json()["server"] == k8s.url
        replaced = await client.put(
            f"{gw}/v1/clusters/spare", json={"kubeconfig": text}, headers=headers
        )
        assert replaced.status_code == 200
        listed = await client.get(f"{gw}/v1/clusters", headers=headers)
        assert "spare" in [c["name"] for c in listed.json()["clusters"]]
        for answer in (created, replaced, listed):
            assert k8s.token not in answer.text
        # the token is not readable in deploy's database either
        assert k8s.token.encode() not in (stack.home / "deploy.db").read_bytes()

        wrong = yaml.safe_load(text)
        wrong["users"][0]["user"] = {"exec": {"command": "aws", "args": ["eks", "get-token"]}}
        refused = await client.put(
            f"{gw}/v1/clusters/spare", json={"kubeconfig": yaml.safe_dump(wrong)}, headers=headers
        )
        assert refused.status_code == 422
        assert "exec plugins run commands on the deploy host" in refused.text
        bad = await client.put(
            f"{gw}/v1/clusters/Bad_Name", json={"kubeconfig": text}, headers=headers
        )
        assert bad.status_code == 422

        unreachable = yaml.safe_load(text)
        unreachable["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"
        answer = await client.put(
            f"{gw}/v1/clusters/nowhere-yet",
            json={"kubeconfig": yaml.safe_dump(unreachable)},
            headers=headers,
        )
        assert answer.status_code == 201 and answer.json()["reachable"] is False
        assert answer.json()["error"]

        assert (await client.delete(f"{gw}/v1/clusters/spare", headers=headers)).status_code == 204
        assert (await client.get(f"{gw}/v1/clusters/spare", headers=headers)).status_code == 404
        await client.delete(f"{gw}/v1/clusters/nowhere-yet", headers=headers)

        # a launch onto a cluster nobody registered fails, saying how to register it
        name = unique("nocluster").replace("_", "-")
        await _app(client, gw, headers, SPEC.format(name=name, image=IMAGE, deadline=600), name)
        failed = await _deploy(client, gw, LAUNCH.format(name=name, cluster="atlantis"), headers)
        assert failed["state"] == "FAILURE"
        assert "PUT /v1/clusters/atlantis" in failed["reason"]


async def test_an_operator_retries_a_deployment_that_waits_for_one(
    stack: RunningStack, k8s: K8sDouble
) -> None:
    gw, headers = stack.stack.gateway_url, auth(stack)
    name = unique("waitop").replace("_", "-")
    async with httpx.AsyncClient(timeout=30) as client:
        await _app(client, gw, headers, SPEC.format(name=name, image=IMAGE, deadline=600), name)
        k8s.fail_rollout("ops", f"{name}-live-web", message="back-off restarting failed container")
        waiting = await _deploy(client, gw, LAUNCH.format(name=name, cluster="k8s"), headers)
        assert waiting["state"] == "WAIT_FOR_OP", waiting
        # the reason names the component, the object and what the cluster said
        for part in (
            "component web",
            f"Deployment ops/{name}-live-web",
            "ProgressDeadlineExceeded",
            "back-off restarting failed container",
        ):
            assert part in waiting["reason"], waiting["reason"]
        [component] = waiting["components"]
        assert component["name"] == "web" and component["state"] == "FAILURE"
        assert k8s.get("configmaps", "ops", f"{name}-live-web")["data"] == {"app.conf": "mode=one"}

        k8s.heal("ops", f"{name}-live-web")
        retried = await client.post(f"{gw}/v1/deployments/{waiting['id']}/retry", headers=headers)
        assert retried.status_code == 202, retried.text
        # the deployment is queued again (its state leaves WAIT_FOR_OP), then rolls out
        url = f"{gw}/v1/deployments/{waiting['id']}"
        await _until(client, url, headers, {"CREATED", "PROCESSING", "WAITING", "SUCCESS"})
        done = await _until(client, url, headers, {"SUCCESS", "FAILURE", "WAIT_FOR_OP"})
        assert done["state"] == "SUCCESS", done
        assert done["revision"] == waiting["revision"] + 1
        again = await client.post(f"{gw}/v1/deployments/{waiting['id']}/retry", headers=headers)
        assert again.status_code == 409 and "only WAIT_FOR_OP or FAILURE" in again.text
        instance = (await client.get(f"{gw}/v1/instances/{name}-live", headers=headers)).json()
        assert instance["state"] == "SUCCESS" and instance["revision"] == done["revision"]


async def test_a_deployment_in_progress_is_terminated_on_request(
    stack: RunningStack, k8s: K8sDouble
) -> None:
    gw, headers = stack.stack.gateway_url, auth(stack)
    name = unique("term").replace("_", "-")
    async with httpx.AsyncClient(timeout=30) as client:
        await _app(client, gw, headers, SPEC.format(name=name, image=IMAGE, deadline=20000), name)
        k8s.fail_rollout("ops", f"{name}-live-web")
        deployment_id = await _launch(client, gw, headers, LAUNCH.format(name=name, cluster="k8s"))
        url = f"{gw}/v1/deployments/{deployment_id}"
        await _until(client, url, headers, {"WAITING"})
        stop = await client.post(f"{url}/terminate", headers=headers)
        assert stop.status_code == 202, stop.text
        done = await _until(client, url, headers, {"TERMINATED", "SUCCESS", "FAILURE"}, 30)
        assert done["state"] == "TERMINATED" and "terminated by request" in done["reason"]
        again = await client.post(f"{url}/terminate", headers=headers)
        assert again.status_code == 409 and "has finished (TERMINATED)" in again.text
        instance = (await client.get(f"{gw}/v1/instances/{name}-live", headers=headers)).json()
        assert instance["state"] == "TERMINATED"
    k8s.heal("ops", f"{name}-live-web")


async def test_a_deploy_worker_killed_mid_rollout_is_taken_over(
    stack: RunningStack, k8s: K8sDouble
) -> None:
    gw, headers = stack.stack.gateway_url, auth(stack)
    name = unique("killed").replace("_", "-")
    async with httpx.AsyncClient(timeout=30) as client:
        await _app(client, gw, headers, SPEC.format(name=name, image=IMAGE, deadline=20000), name)
        k8s.fail_rollout("ops", f"{name}-live-web")
        deployment_id = await _launch(client, gw, headers, LAUNCH.format(name=name, cluster="k8s"))
        url = f"{gw}/v1/deployments/{deployment_id}"
        await _until(client, url, headers, {"WAITING"})
        os.kill(stack.pid("deploy"), signal.SIGKILL)
        k8s.heal("ops", f"{name}-live-web")  # the rollout can finish now, with nobody waiting
        done = await _wait(client, gw, deployment_id, headers)
        assert done["state"] == "SUCCESS", done
    assert f"{deployment_id} resumed" in stack.log("deploy")


async def test_a_helm_component_rolls_out_and_uninstalls(
    stack: RunningStack, k8s: K8sDouble, tmp_path: Path
) -> None:
    chart = tmp_path / "cache"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: cache\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("replicas: 1\n")
    (chart / "templates" / "all.yaml").write_text(CHART_TEMPLATE)
    gw, headers = stack.stack.gateway_url, auth(stack)
    name = unique("chart").replace("_", "-")
    async with httpx.AsyncClient(timeout=30) as client:
        await _app(client, gw, headers, HELM_SPEC.format(name=name, chart=chart), name)
        done = await _deploy(client, gw, LAUNCH.format(name=name, cluster="k8s"), headers)
        assert done["state"] == "SUCCESS", done
        deployment = k8s.get("deployments", "ops", f"{name}-live-cache")
        assert deployment is not None and deployment["status"]["availableReplicas"] == 2
        labels = deployment["metadata"]["labels"]
        assert labels["opsline.io/instance"] == f"{name}-live"
        assert k8s.get("configmaps", "ops", f"{name}-live-cache-settings") is not None
        gone = await client.delete(f"{gw}/v1/instances/{name}-live", headers=headers)
        assert (await _wait(client, gw, gone.json()["id"], headers))["state"] == "SUCCESS"
    assert k8s.get("deployments", "ops", f"{name}-live-cache") is None
    assert k8s.get("configmaps", "ops", f"{name}-live-cache-settings") is None
