"""Access through the real stack: two teams, their members, tokens and scopes; what each
sees and may change; the audit log; the rate limit; the live stream per caller."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth
from tests.e2e.test_deploy import _free_port

pytestmark = pytest.mark.e2e
HELLO_SRC = Path(__file__).resolve().parents[2] / "examples" / "hello" / "src"

SPEC = """\
apiVersion: opsline.io/v1
kind: App
meta:
  name: {name}
  team: {team}
  description: {description}
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
      ports: [{{name: http, port: "{{{{ parameters.port }}}}"}}]
"""

LAUNCH = """\
apiVersion: opsline.io/v1
kind: Launch
app: {name}
version: latest
instance: {name}-dev
target: {{cluster: local, namespace: e2e, stage: dev}}
parameters: {{port: {port}}}
"""


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    gw: str
    admin: dict[str, str]
    team_a: str
    team_b: str
    app_a: str
    app_b: str
    viewer_a: str  # tokens
    maintainer_a: str
    admin_a: str
    maintainer_name: str
    build_b: str
    deployment_b: str
    instance_b: str


def _ok(response: httpx.Response, *codes: int) -> dict[str, Any]:
    assert response.status_code in (codes or (200, 201, 202)), response.text
    return dict(response.json()) if response.content else {}


def _user(c: httpx.Client, gw: str, admin: dict[str, str], team: str, role: str) -> tuple[str, str]:
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    _ok(c.post(f"{gw}/v1/users", json={"name": name}, headers=admin))
    _ok(c.put(f"{gw}/v1/teams/{team}/members/{name}", json={"role": role}, headers=admin))
    token = _ok(c.post(f"{gw}/v1/users/{name}/tokens", json={"name": "e2e"}, headers=admin))
    return name, str(token["token"])


def _apply(
    c: httpx.Client, gw: str, headers: dict[str, str], name: str, team: str, note: str = "v1"
) -> httpx.Response:
    text = SPEC.format(name=name, team=team, description=note, src=HELLO_SRC)
    return c.post(
        f"{gw}/v1/apps:apply",
        content=text.encode(),
        headers={**headers, "content-type": "application/yaml"},
    )


def _build(c: httpx.Client, gw: str, headers: dict[str, str], app: str) -> str:
    build_id = str(_ok(c.post(f"{gw}/v1/apps/{app}/builds", json={}, headers=headers))["build_id"])
    for _ in range(360):
        status = _ok(c.get(f"{gw}/v1/builds/{build_id}", headers=headers))["status"]
        if status == "SUCCEEDED":
            return build_id
        assert status in ("QUEUED", "RUNNING"), status
        time.sleep(0.25)
    raise AssertionError("build did not finish")


def _deploy(c: httpx.Client, gw: str, headers: dict[str, str], app: str) -> dict[str, Any]:
    launch = LAUNCH.format(name=app, port=_free_port())
    started = _ok(
        c.post(
            f"{gw}/v1/deployments",
            content=launch.encode(),
            headers={**headers, "content-type": "application/yaml"},
        )
    )
    for _ in range(360):
        body = _ok(c.get(f"{gw}/v1/deployments/{started['id']}", headers=headers))
        if body["state"] not in ("CREATED", "PROCESSING", "WAITING"):
            assert body["state"] == "SUCCESS", body
            return body
        time.sleep(0.25)
    raise AssertionError("deployment did not finish")


@pytest.fixture(scope="module")
def world(stack: RunningStack) -> Iterator[World]:
    gw, admin = stack.stack.gateway_url, auth(stack)
    suffix = uuid.uuid4().hex[:6]
    team_a, team_b = f"team-a-{suffix}", f"team-b-{suffix}"
    app_a, app_b = f"app-a-{suffix}", f"app-b-{suffix}"
    with httpx.Client(timeout=30) as c:
        for team in (team_a, team_b):
            _ok(c.post(f"{gw}/v1/teams", json={"name": team}, headers=admin))
        _, viewer_a = _user(c, gw, admin, team_a, "viewer")
        maintainer_name, maintainer_a = _user(c, gw, admin, team_a, "maintainer")
        _, admin_a = _user(c, gw, admin, team_a, "admin")
        _ok(_apply(c, gw, _h(maintainer_a), app_a, team_a))
        _, maintainer_b = _user(c, gw, admin, team_b, "maintainer")
        _ok(_apply(c, gw, _h(maintainer_b), app_b, team_b))
        build_b = _build(c, gw, _h(maintainer_b), app_b)
        deployed = _deploy(c, gw, _h(maintainer_b), app_b)
        yield World(
            gw,
            admin,
            team_a,
            team_b,
            app_a,
            app_b,
            viewer_a,
            maintainer_a,
            admin_a,
            maintainer_name,
            build_b,
            deployed["id"],
            deployed["instance"],
        )
        for instance in (deployed["instance"], f"{app_a}-dev"):
            c.delete(f"{gw}/v1/instances/{instance}", headers=admin)


def test_a_viewer_of_a_sees_nothing_of_b(world: World) -> None:
    gw, viewer = world.gw, _h(world.viewer_a)
    with httpx.Client(timeout=30) as c:
        names = [a["name"] for a in _ok(c.get(f"{gw}/v1/apps", headers=viewer))["apps"]]
        assert world.app_a in names and world.app_b not in names
        assert all(
            a["team"] == world.team_a for a in _ok(c.get(f"{gw}/v1/apps", headers=viewer))["apps"]
        )
        for path in (
            f"/v1/apps/{world.app_b}",
            f"/v1/apps/{world.app_b}/builds",
            f"/v1/apps/{world.app_b}/packages",
            f"/v1/builds/{world.build_b}",
            f"/v1/deployments/{world.deployment_b}",
            f"/v1/instances/{world.instance_b}",
            f"/v1/apps/{world.app_b}/timeline",
        ):
            response = c.get(f"{gw}{path}", headers=viewer)
            assert response.status_code == 404, (path, response.text)
        deployments = _ok(c.get(f"{gw}/v1/deployments", headers=viewer))["deployments"]
        instances = _ok(c.get(f"{gw}/v1/instances", headers=viewer))["instances"]
        assert world.app_b not in {d["app"] for d in deployments} | {i["app"] for i in instances}
        # the platform admin sees B's things: they exist, the viewer is just not told
        assert (
            c.get(f"{gw}/v1/deployments/{world.deployment_b}", headers=world.admin).status_code
            == 200
        )
        query = {"name": "up", "start": "0", "end": "2100-01-01T00:00:00Z"}
        assert (
            c.get(
                f"{gw}/v1/metrics/query",
                params={**query, "match": f"app={world.app_b}"},
                headers=viewer,
            ).status_code
            == 404
        )
        assert c.get(f"{gw}/v1/metrics/query", params=query, headers=viewer).status_code == 403
        mine = c.get(
            f"{gw}/v1/metrics/query",
            params={**query, "match": f"app={world.app_a}"},
            headers=viewer,
        )
        assert mine.status_code == 200, mine.text
        # and a viewer changes nothing, not even of team A
        assert (
            c.post(f"{gw}/v1/apps/{world.app_a}/builds", json={}, headers=viewer).status_code == 403
        )


def test_a_maintainer_of_a_builds_and_deploys_a_but_not_b(world: World) -> None:
    gw, maintainer = world.gw, _h(world.maintainer_a)
    with httpx.Client(timeout=30) as c:
        _build(c, gw, maintainer, world.app_a)
        deployed = _deploy(c, gw, maintainer, world.app_a)
        assert deployed["app"] == world.app_a
        assert (
            c.post(f"{gw}/v1/apps/{world.app_b}/builds", json={}, headers=maintainer).status_code
            == 404
        )
        launch_b = LAUNCH.format(name=world.app_b, port=_free_port())
        refused = c.post(
            f"{gw}/v1/deployments",
            content=launch_b.encode(),
            headers={**maintainer, "content-type": "application/yaml"},
        )
        assert refused.status_code == 404
        assert (
            c.post(f"{gw}/v1/instances/{world.instance_b}/rollback", headers=maintainer).status_code
            == 404
        )
        assert (
            c.delete(f"{gw}/v1/instances/{world.instance_b}", headers=maintainer).status_code == 404
        )
        assert (
            c.post(
                f"{gw}/v1/deployments/{world.deployment_b}/retry", headers=maintainer
            ).status_code
            == 404
        )
        # applying into team B (which they are not in) is refused before the appmanager
        assert (
            _apply(c, gw, maintainer, f"x-{uuid.uuid4().hex[:6]}", world.team_b).status_code == 403
        )
        # B's instance is untouched
        assert (
            _ok(c.get(f"{gw}/v1/instances/{world.instance_b}", headers=world.admin))["state"]
            != "UNINSTALLED"
        )


def test_a_read_scoped_token_cannot_mutate(world: World) -> None:
    gw = world.gw
    with httpx.Client(timeout=30) as c:
        created = _ok(
            c.post(
                f"{gw}/v1/tokens",
                json={"name": f"ro-{uuid.uuid4().hex[:4]}", "scopes": ["read"]},
                headers=_h(world.maintainer_a),
            )
        )
        read_only = _h(created["token"])
        assert c.get(f"{gw}/v1/apps/{world.app_a}", headers=read_only).status_code == 200
        refused = c.post(f"{gw}/v1/apps/{world.app_a}/builds", json={}, headers=read_only)
        assert refused.status_code == 403
        assert "do not include 'write'" in refused.json()["detail"]
        assert _apply(c, gw, read_only, world.app_a, world.team_a, "changed").status_code == 403


def test_revoked_and_expired_tokens_are_401(world: World) -> None:
    gw, maintainer = world.gw, _h(world.maintainer_a)
    with httpx.Client(timeout=30) as c:
        revokable = _ok(
            c.post(
                f"{gw}/v1/tokens", json={"name": f"r-{uuid.uuid4().hex[:4]}"}, headers=maintainer
            )
        )
        short = _ok(
            c.post(
                f"{gw}/v1/tokens",
                json={"name": f"s-{uuid.uuid4().hex[:4]}", "expires_in_s": 1},
                headers=maintainer,
            )
        )
        assert c.get(f"{gw}/v1/whoami", headers=_h(revokable["token"])).status_code == 200
        _ok(c.delete(f"{gw}/v1/tokens/{revokable['id']}", headers=maintainer))
        assert c.get(f"{gw}/v1/whoami", headers=_h(revokable["token"])).status_code == 401
        time.sleep(1.5)
        expired = c.get(f"{gw}/v1/whoami", headers=_h(short["token"]))
        assert expired.status_code == 401
        listed = {
            t["id"]: t["state"] for t in _ok(c.get(f"{gw}/v1/tokens", headers=maintainer))["tokens"]
        }
        assert listed[revokable["id"]] == "revoked" and listed[short["id"]] == "expired"


def test_audit_shows_the_mutations_with_outcomes(world: World) -> None:
    gw = world.gw
    with httpx.Client(timeout=30) as c:
        c.post(f"{gw}/v1/apps/{world.app_a}/builds", json={}, headers=_h(world.maintainer_a))
        c.post(f"{gw}/v1/apps/{world.app_b}/builds", json={}, headers=_h(world.maintainer_a))
        records = _ok(
            c.get(
                f"{gw}/v1/audit",
                params={"user": world.maintainer_name, "limit": 1000},
                headers=world.admin,
            )
        )["records"]
        seen = {(r["path"], r["outcome"]) for r in records}
        assert (f"/v1/apps/{world.app_a}/builds", "ok") in seen
        assert (f"/v1/apps/{world.app_b}/builds", "denied") in seen
        assert ("/v1/deployments", "ok") in seen
        assert all(r["request_id"] and r["ts"] for r in records)
        # A's team admin sees A's records, none of B's
        team_view = _ok(c.get(f"{gw}/v1/audit", params={"limit": 1000}, headers=_h(world.admin_a)))[
            "records"
        ]
        assert team_view and {r["team"] for r in team_view} == {world.team_a}
        assert (
            world.maintainer_a
            not in c.get(f"{gw}/v1/audit", params={"limit": 1000}, headers=world.admin).text
        )


def test_the_rate_limit_answers_429_with_retry_after(world: World) -> None:
    gw = world.gw
    with httpx.Client(timeout=30) as c:
        slow = _ok(
            c.post(
                f"{gw}/v1/tokens",
                json={
                    "name": f"slow-{uuid.uuid4().hex[:4]}",
                    "rate_limit_per_s": 0.2,
                    "rate_limit_burst": 2,
                },
                headers=_h(world.viewer_a),
            )
        )
        codes = [c.get(f"{gw}/v1/apps", headers=_h(slow["token"])) for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        assert codes[2].headers["retry-after"] == "5"
        assert "rate limit" in codes[2].json()["detail"]
        assert c.get(f"{gw}/v1/apps", headers=_h(world.viewer_a)).status_code == 200


# ------------------------------------------------------------------ live stream


class Frames:
    """SSE frames of one open stream, read as they come."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self.lines = lines
        self.seen: list[dict[str, str]] = []

    async def next(self, timeout: float = 60) -> dict[str, str]:
        async def read() -> dict[str, str]:
            frame: dict[str, str] = {}
            async for line in self.lines:
                if line.startswith(":"):
                    continue
                if not line:
                    if frame:
                        return frame
                    continue
                key, _, value = line.partition(": ")
                frame[key] = value
            raise AssertionError("stream ended")

        frame = await asyncio.wait_for(read(), timeout)
        self.seen.append(frame)
        return frame

    async def until(self, done: Any, timeout: float = 60) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.next(max(0.1, deadline - time.monotonic()))
            if done(frame):
                return frame


def _app_of(frame: dict[str, str]) -> str:
    return str(orjson.loads(frame.get("data", "{}")).get("data", {}).get("app", ""))


async def _touch(
    client: httpx.AsyncClient, world: World, app: str, team: str, headers: dict[str, str]
) -> None:
    text = SPEC.format(name=app, team=team, description=uuid.uuid4().hex, src=HELLO_SRC)
    r = await client.post(
        f"{world.gw}/v1/apps:apply",
        content=text.encode(),
        headers={**headers, "content-type": "application/yaml"},
    )
    assert r.status_code == 200, r.text


async def test_the_stream_filters_resumes_and_shows_only_what_the_caller_may_see(
    world: World,
) -> None:
    url = f"{world.gw}/v1/events/stream"
    maintainer_b = world.admin  # the platform admin changes B's app
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=90)) as client:
        async with (
            client.stream(
                "GET", url, headers=_h(world.viewer_a), params={"type": "io.opsline.app."}
            ) as viewer_stream,
            client.stream(
                "GET", url, headers=world.admin, params={"app": world.app_b}
            ) as admin_stream,
        ):
            assert viewer_stream.status_code == 200 and admin_stream.status_code == 200
            viewer, admin = Frames(viewer_stream.aiter_lines()), Frames(admin_stream.aiter_lines())
            await asyncio.sleep(0.5)
            for _ in range(2):
                await _touch(client, world, world.app_b, world.team_b, maintainer_b)
                await _touch(client, world, world.app_a, world.team_a, _h(world.maintainer_a))
            await _touch(client, world, world.app_b, world.team_b, maintainer_b)
            first_a = await viewer.until(lambda f: _app_of(f) == world.app_a)
            second_a = await viewer.until(lambda f: _app_of(f) == world.app_a)
            # the admin's app filter: B's events only; three arrive, so they did flow
            for _ in range(3):
                frame = await admin.until(lambda f: "id" in f)
                assert _app_of(frame) == world.app_b
        assert all(f["id"] and f["event"].startswith("io.opsline.app.") for f in viewer.seen)
        assert {_app_of(f) for f in viewer.seen} == {world.app_a}  # none of B's

        # resume after the first: the second comes again, from the ring
        async with client.stream(
            "GET",
            url,
            headers={**_h(world.viewer_a), "Last-Event-ID": first_a["id"]},
            params={"type": "io.opsline.app."},
        ) as resumed:
            again = Frames(resumed.aiter_lines())
            assert (await again.until(lambda f: "id" in f))["id"] == second_a["id"]
        # an id the gateway does not hold: told so, then what it holds
        async with client.stream(
            "GET",
            url,
            headers=_h(world.viewer_a),
            params={"last_event_id": "never-seen", "app": world.app_a},
        ) as lost:
            frames = Frames(lost.aiter_lines())
            missed = await frames.next()
            assert missed["event"] == "missed"
            assert orjson.loads(missed["data"])["last_event_id"] == "never-seen"
            replayed = await frames.until(lambda f: f.get("id") == second_a["id"])
            assert {_app_of(f) for f in frames.seen[1:]} == {world.app_a}
            assert replayed["event"].startswith("io.opsline.app.")


def test_the_cli_manages_teams_users_and_tokens(stack: RunningStack, world: World) -> None:
    from tests.e2e.test_cli import opsline

    name = f"cli-{uuid.uuid4().hex[:6]}"
    assert opsline(stack, "user", "create", name).returncode == 0
    added = opsline(stack, "team", "add", world.team_a, name, "--role", "maintainer")
    assert added.returncode == 0, added.stderr
    made = opsline(stack, "token", "create", "laptop", "--user", name, "--scope", "read")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("opl_") and "not shown again" in made.stderr
    me = subprocess.run(
        [sys.executable, "-m", "opsline", "--token", secret, "whoami"],
        env={**os.environ, "OPSLINE_URL": world.gw, "NO_COLOR": "1", "COLUMNS": "200"},
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert me.returncode == 0, me.stderr
    assert (
        name in me.stdout
        and f"{world.team_a}: maintainer" in me.stdout
        and "scopes: read" in me.stdout
    )
    listed = opsline(stack, "token", "list", "--user", name)
    assert "laptop  active  scopes read" in listed.stdout and secret not in listed.stdout
    token_id = listed.stdout.split()[0]
    assert opsline(stack, "token", "revoke", token_id).returncode == 0
    members = opsline(stack, "team", "members", world.team_a)
    assert f"{name}  maintainer" in members.stdout
    trail = opsline(stack, "audit", "--user", "admin", "--limit", "20")
    assert f"DELETE /v1/tokens/{token_id}  200 ok" in trail.stdout
