"""The catalogue and builds through the gateway: apply → build → package version."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth, unique

pytestmark = pytest.mark.e2e

SPEC = """\
apiVersion: opsline.io/v1
kind: App
meta:
  name: {name}
  team: e2e
components:
  - name: web
    type: process
    source:
      dir: ./web
  - name: jobs
    type: process
    source:
      dir: ./jobs
"""


def _app_dir(tmp_path: Path, name: str) -> Path:
    for component in ("web", "jobs"):
        folder = tmp_path / name / component
        folder.mkdir(parents=True)
        (folder / "main.py").write_text(f"print('{component}')\n")
    return tmp_path / name


async def _apply(
    client: httpx.AsyncClient, stack: RunningStack, text: str, base: Path
) -> httpx.Response:
    return await client.post(
        f"{stack.stack.gateway_url}/v1/apps:apply",
        content=text.encode(),
        headers={
            **auth(stack),
            "content-type": "application/yaml",
            "x-opsline-base-dir": str(base),
        },
    )


async def _wait_build(
    client: httpx.AsyncClient, stack: RunningStack, build_id: str, timeout: float = 90
) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        response = await client.get(
            f"{stack.stack.gateway_url}/v1/builds/{build_id}", headers=auth(stack)
        )
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"build {build_id} still {body.get('status')} after {timeout}s")


async def test_apply_build_and_package(stack: RunningStack, tmp_path: Path) -> None:
    name = unique("shop").replace("_", "-")
    base = _app_dir(tmp_path, name)
    text = SPEC.format(name=name)
    async with httpx.AsyncClient(timeout=30) as client:
        created = await _apply(client, stack, text, base)
        assert created.status_code == 200, created.text
        assert created.json() == {"app": name, "action": "created", "changes": []}
        again = await _apply(client, stack, text, base)
        assert again.json()["action"] == "unchanged"

        started = await client.post(
            f"{stack.stack.gateway_url}/v1/apps/{name}/builds", json={}, headers=auth(stack)
        )
        assert started.status_code == 202, started.text
        assert started.json()["version"] == "0.1.0"
        build = await _wait_build(client, stack, started.json()["build_id"])
        assert build["status"] == "SUCCEEDED", build
        assert {s["component"] for s in build["steps"]} == {"web", "jobs"}

        packages = await client.get(
            f"{stack.stack.gateway_url}/v1/apps/{name}/packages", headers=auth(stack)
        )
        (package,) = packages.json()["packages"]
        assert package["version"] == "0.1.0"
        for artifact in package["artifacts"]:
            path = Path(urlparse(artifact["uri"]).path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert artifact["digest"] == f"sha256:{digest}"


async def test_a_failing_build_says_why(stack: RunningStack, tmp_path: Path) -> None:
    name = unique("broken").replace("_", "-")
    base = _app_dir(tmp_path, name)
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await _apply(client, stack, SPEC.format(name=name), base)).status_code == 200
        # the folder disappears after the app was applied: the build must fail, clearly
        for path in sorted((base / "jobs").rglob("*"), reverse=True):
            path.unlink()
        (base / "jobs").rmdir()
        started = await client.post(
            f"{stack.stack.gateway_url}/v1/apps/{name}/builds", json={}, headers=auth(stack)
        )
        build = await _wait_build(client, stack, started.json()["build_id"])
    assert build["status"] == "FAILED"
    assert "does not exist" in build["reason"] and "jobs" in build["reason"]


async def test_catalogue_input_errors(stack: RunningStack, tmp_path: Path) -> None:
    gw = stack.stack.gateway_url
    async with httpx.AsyncClient(timeout=30) as client:
        bad = await _apply(
            client, stack, "apiVersion: opsline.io/v1\nkind: App\nmeta: {}\n", tmp_path
        )
        assert bad.status_code == 422
        errors = bad.json()["detail"]["errors"]
        assert any("meta.name: Field required" in e for e in errors), errors
        assert any("components: Field required" in e for e in errors), errors
        missing = await client.get(f"{gw}/v1/apps/no-such-app", headers=auth(stack))
        assert missing.status_code == 404 and "no app named" in missing.text
        bad_name = await client.get(f"{gw}/v1/apps/..%2Fx", headers=auth(stack))
        assert bad_name.status_code in (404, 422)
        no_token = await client.get(f"{gw}/v1/apps")
        assert no_token.status_code == 401


async def test_a_build_whose_worker_is_killed_is_retried(
    stack: RunningStack, tmp_path: Path
) -> None:
    name = unique("heavy").replace("_", "-")
    base = tmp_path / name
    (base / "web").mkdir(parents=True)
    (base / "jobs").mkdir(parents=True)
    for i in range(4):  # incompressible data: packing takes a few seconds
        (base / "web" / f"blob{i}.bin").write_bytes(os.urandom(40 << 20))
    (base / "jobs" / "main.py").write_text("print('jobs')\n")
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await _apply(client, stack, SPEC.format(name=name), base)).status_code == 200
        started = await client.post(
            f"{stack.stack.gateway_url}/v1/apps/{name}/builds", json={}, headers=auth(stack)
        )
        build_id = started.json()["build_id"]
        deadline = time.monotonic() + 60
        status = ""
        while time.monotonic() < deadline and status != "RUNNING":
            status = (
                await client.get(
                    f"{stack.stack.gateway_url}/v1/builds/{build_id}", headers=auth(stack)
                )
            ).json()["status"]
            await asyncio.sleep(0.1)
        assert status == "RUNNING"
        old = stack.pid("build")
        os.kill(old, signal.SIGKILL)
        build = await _wait_build(client, stack, build_id, timeout=180)
    assert build["status"] == "SUCCEEDED", build
    assert stack.pid("build") != old
    assert f"{build_id} requeued" in stack.log("build")  # the reaper took it back


async def test_market_publish_list_and_install(stack: RunningStack, tmp_path: Path) -> None:
    name = unique("market").replace("_", "-")
    base = _app_dir(tmp_path, name)
    market = (stack.home / "markets" / "main").as_uri()
    gw = stack.stack.gateway_url
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await _apply(client, stack, SPEC.format(name=name), base)).status_code == 200
        started = await client.post(f"{gw}/v1/apps/{name}/builds", json={}, headers=auth(stack))
        build = await _wait_build(client, stack, started.json()["build_id"])
        assert build["status"] == "SUCCEEDED"
        body = {"market": market, "app": name, "version": "0.1.0"}
        published = await client.post(f"{gw}/v1/market/publish", json=body, headers=auth(stack))
        assert published.status_code == 200, published.text
        listed = await client.get(f"{gw}/v1/market", params={"market": market}, headers=auth(stack))
        assert {"app": name, "version": "0.1.0"}.items() <= listed.json()["packages"][-1].items()
        installed = await client.post(f"{gw}/v1/market/install", json=body, headers=auth(stack))
        assert installed.json()["action"] == "unchanged"  # same digests: nothing to do
        outside = await client.post(
            f"{gw}/v1/market/publish",
            headers=auth(stack),
            json={**body, "market": "file:///etc/opsline"},
        )
        assert outside.status_code == 422 and "outside the allowed" in outside.text
