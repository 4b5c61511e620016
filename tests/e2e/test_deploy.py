"""Deploy on the local runtime: launch, upgrade, roll back, uninstall, for real processes."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import pytest

from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth, unique

pytestmark = pytest.mark.e2e
HELLO_SRC = Path(__file__).resolve().parents[2] / "examples" / "hello" / "src"

SPEC = """\
apiVersion: opsline.io/v1
kind: App
meta:
  name: {name}
  team: e2e
parameters:
  - name: port
    default: 8000
components:
  - name: web
    type: process
    source:
      dir: {src}
    traits:
      command: python app.py
      env: {{GREETING: hello}}
      ports: [{{name: http, port: "{{{{ parameters.port }}}}"}}]
"""

LAUNCH = """\
apiVersion: opsline.io/v1
kind: Launch
app: {name}
version: {version}
instance: {name}-dev
target: {{cluster: local, namespace: e2e, stage: dev}}
parameters: {{port: {port}}}
components:
  web: {{traits: {{env: {{GREETING: "{greeting}"}}}}}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _build(client: httpx.AsyncClient, gw: str, name: str, headers: dict) -> str:
    started = await client.post(f"{gw}/v1/apps/{name}/builds", json={}, headers=headers)
    build_id = started.json()["build_id"]
    for _ in range(240):
        body = (await client.get(f"{gw}/v1/builds/{build_id}", headers=headers)).json()
        if body["status"] == "SUCCEEDED":
            return str(body["version"])
        assert body["status"] in ("QUEUED", "RUNNING"), body
        await asyncio.sleep(0.25)
    raise AssertionError("build did not finish")


async def _deploy(client: httpx.AsyncClient, gw: str, text: str, headers: dict) -> dict:
    response = await client.post(
        f"{gw}/v1/deployments",
        content=text.encode(),
        headers={**headers, "content-type": "application/yaml"},
    )
    assert response.status_code == 202, response.text
    return await _wait(client, gw, response.json()["id"], headers)


async def _wait(client: httpx.AsyncClient, gw: str, deployment_id: str, headers: dict) -> dict:
    deadline = time.monotonic() + 90
    body: dict = {}
    while time.monotonic() < deadline:
        body = (await client.get(f"{gw}/v1/deployments/{deployment_id}", headers=headers)).json()
        if body["state"] in ("SUCCESS", "FAILURE", "WAIT_FOR_OP", "ROLLED_BACK", "TERMINATED"):
            return body
        await asyncio.sleep(0.25)
    raise AssertionError(f"deployment {deployment_id} stuck in {body.get('state')}")


async def _logged(stack: RunningStack, instance: str, text: str) -> None:
    """Wait until the process's line is in the log index (official client, real store)."""
    from elasticsearch import AsyncElasticsearch

    async with AsyncElasticsearch(stack.stack.elasticsearch_url) as es:
        for _ in range(120):
            found = await es.search(
                index="opsline-logs-*",
                query={"bool": {"filter": [{"term": {"labels.instance": instance}}]}},
                size=50,
                ignore_unavailable=True,
                allow_no_indices=True,
            )
            messages = [h["_source"]["message"] for h in found["hits"]["hits"]]
            if any(text in m for m in messages):
                return
            await asyncio.sleep(0.5)
    raise AssertionError(f"{text!r} of {instance} never reached the log index: {messages}")


async def test_launch_upgrade_rollback_uninstall(stack: RunningStack) -> None:
    gw, headers = stack.stack.gateway_url, auth(stack)
    name = unique("svc").replace("_", "-")
    port = _free_port()
    async with httpx.AsyncClient(timeout=30) as client:
        applied = await client.post(
            f"{gw}/v1/apps:apply",
            content=SPEC.format(name=name, src=HELLO_SRC).encode(),
            headers={**headers, "content-type": "application/yaml"},
        )
        assert applied.status_code == 200, applied.text
        v1 = await _build(client, gw, name, headers)
        v2 = await _build(client, gw, name, headers)

        first = await _deploy(
            client, gw, LAUNCH.format(name=name, version=v1, port=port, greeting="one"), headers
        )
        assert first["state"] == "SUCCESS", first
        answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).json()
        assert answer == {"app": "hello", "version": v1, "greeting": "one"}
        # what the process printed: through the API, and shipped into the log index
        logs = await client.get(f"{gw}/v1/instances/{name}-dev/logs", headers=headers)
        assert logs.status_code == 200, logs.text
        assert (
            f"hello {v1} listening on http://127.0.0.1:{port}" in logs.json()["components"]["web"]
        )
        assert (
            await client.get(f"{gw}/v1/instances/{name}-dev/logs?component=db", headers=headers)
        ).status_code == 404
        await _logged(stack, f"{name}-dev", f"hello {v1} listening")

        second = await _deploy(
            client, gw, LAUNCH.format(name=name, version=v2, port=port, greeting="two"), headers
        )
        assert second["state"] == "SUCCESS" and second["kind"] == "upgrade", second
        answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).json()
        assert (answer["version"], answer["greeting"]) == (v2, "two")
        instance = (await client.get(f"{gw}/v1/instances/{name}-dev", headers=headers)).json()
        assert (instance["version"], instance["revision"]) == (v2, 2)

        back = await client.post(f"{gw}/v1/instances/{name}-dev/rollback", json={}, headers=headers)
        assert back.status_code == 202, back.text
        rolled = await _wait(client, gw, back.json()["id"], headers)
        assert rolled["state"] == "SUCCESS" and rolled["revision"] == 1, rolled
        answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).json()
        assert (answer["version"], answer["greeting"]) == (v1, "one")

        gone = await client.delete(f"{gw}/v1/instances/{name}-dev", headers=headers)
        assert gone.status_code == 202
        done = await _wait(client, gw, gone.json()["id"], headers)
        assert done["state"] == "SUCCESS", done
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        missing = await client.get(f"{gw}/v1/instances/{name}-dev", headers=headers)
        assert missing.status_code == 404


async def test_a_broken_upgrade_is_rolled_back_with_a_reason(
    stack: RunningStack, tmp_path: Path
) -> None:
    gw, headers = stack.stack.gateway_url, auth(stack)
    name = unique("flaky").replace("_", "-")
    port = _free_port()
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text((HELLO_SRC / "app.py").read_text())
    async with httpx.AsyncClient(timeout=30) as client:
        spec = SPEC.format(name=name, src=src)
        await client.post(
            f"{gw}/v1/apps:apply",
            content=spec.encode(),
            headers={**headers, "content-type": "application/yaml"},
        )
        good = await _build(client, gw, name, headers)
        (src / "app.py").write_text("raise SystemExit('config missing: DATABASE_URL')\n")
        bad = await _build(client, gw, name, headers)
        launch = LAUNCH.format(name=name, version=good, port=port, greeting="ok")
        assert (await _deploy(client, gw, launch, headers))["state"] == "SUCCESS"
        broken = await _deploy(
            client,
            gw,
            launch.replace(f"version: {good}", f"version: {bad}") + "rollback: {automatic: true}\n",
            headers,
        )
    assert broken["state"] == "ROLLED_BACK", broken
    assert "web" in broken["reason"] and "DATABASE_URL" in broken["reason"], broken["reason"]
    answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).json()
    assert answer["version"] == good
