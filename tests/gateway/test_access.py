"""The access policy: every /v1 route has one, and what each role and scope may do."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.gateway.policies import POLICIES
from tests.gateway.conftest import Gateway, make_app

BUILD = "0f0e7a52-9a7b-4c5e-8d3f-2b1c0d9e8f7a"
OTHER_BUILD = "1f0e7a52-9a7b-4c5e-8d3f-2b1c0d9e8f7a"


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, full path) of every route, walking app.routes into included routers."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, APIRoute):
            found |= {(m, route.path) for m in route.methods}
        # FastAPI 0.16x includes routers lazily; their routes know only their own prefix
        for context in getattr(route, "effective_route_contexts", lambda: [])():
            found |= {(m, context.path_format) for m in context.methods or ()}
    return found


def _v1(app: FastAPI) -> set[tuple[str, str]]:
    return {(m, p) for m, p in served_routes(app) if p.startswith("/v1/")}


def test_the_route_walk_sees_what_openapi_documents(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    documented = {
        (m.upper(), p)
        for p, ops in app.openapi()["paths"].items()
        for m in ops
        if p.startswith("/v1/")
    }
    assert documented <= _v1(app)


def test_every_v1_route_has_a_policy(tmp_path: Path) -> None:
    routes = _v1(make_app(tmp_path))
    assert len(routes) > 40
    missing = sorted(f"{m} {p}" for m, p in routes if (m, p) not in POLICIES)
    assert not missing, f"routes without an access policy in policies.py: {missing}"


def test_no_policy_names_a_route_that_does_not_exist(tmp_path: Path) -> None:
    served = _v1(make_app(tmp_path))
    # alerts.py may be absent from a checkout; its policies are allowed to wait for it
    stale = {
        k
        for k in POLICIES
        if k not in served
        and not re.search(
            r"/(alerts|alert-rules|silences|incidents|notifications|aiops|health)", k[1]
        )
    }
    assert not stale, f"policies for routes that do not exist: {stale}"


def _concrete(path: str) -> str:
    return re.sub(
        r"\{[^}]+\}",
        lambda m: {
            "{build_id}": BUILD,
            "{deployment_id}": BUILD,
            "{target_id}": BUILD,
            "{token_id}": "1",
        }.get(m.group(0), "x1"),
        path,
    )


async def test_every_v1_route_answers_401_without_a_token(gateway: Gateway) -> None:
    routes = [
        r for r in gateway.app.routes if isinstance(r, APIRoute) and r.path.startswith("/v1/")
    ]
    for route in routes:
        for method in route.methods:
            response = await gateway.client.request(method, _concrete(route.path))
            assert response.status_code == 401, (method, route.path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            wrong = await gateway.client.request(
                method, _concrete(route.path), headers={"Authorization": "Bearer opl_nope"}
            )
            assert wrong.status_code == 401, (method, route.path)
    assert gateway.upstream.calls == []  # nothing reached an owner


async def test_viewer_sees_only_their_teams_apps_and_nothing_of_others(gateway: Gateway) -> None:
    gateway.upstream.apps.update({"shop": "a", "bank": "b"})
    gateway.upstream.builds.update({BUILD: "shop", OTHER_BUILD: "bank"})
    gateway.upstream.deployments.update({BUILD: "shop", OTHER_BUILD: "bank"})
    gateway.upstream.instances.update({"shop-dev": "shop", "bank-dev": "bank"})
    viewer = gateway.auth(await gateway.user("a", "viewer"))
    c = gateway.client

    apps = await c.get("/v1/apps", headers=viewer)
    assert [a["name"] for a in apps.json()["apps"]] == ["shop"]
    for path in (
        "/v1/apps/bank",
        "/v1/apps/bank/builds",
        f"/v1/builds/{OTHER_BUILD}",
        f"/v1/deployments/{OTHER_BUILD}",
        "/v1/instances/bank-dev",
        "/v1/instances/bank-dev/logs",
        "/v1/apps/bank/timeline",
    ):
        response = await c.get(path, headers=viewer)
        assert response.status_code == 404, (path, response.text)
    # the same answer as for something that does not exist at all
    assert (await c.get("/v1/apps/nope", headers=viewer)).json() == {
        "detail": "no app named 'nope'"
    }
    assert (await c.get("/v1/apps/bank", headers=viewer)).json() == {
        "detail": "no app named 'bank'"
    }
    for path in (
        "/v1/apps/shop",
        f"/v1/builds/{BUILD}",
        f"/v1/deployments/{BUILD}",
        "/v1/instances/shop-dev",
    ):
        assert (await c.get(path, headers=viewer)).status_code == 200, path
    deployments = (await c.get("/v1/deployments", headers=viewer)).json()["deployments"]
    assert [d["app"] for d in deployments] == ["shop"]
    instances = (await c.get("/v1/instances", headers=viewer)).json()["instances"]
    assert [i["id"] for i in instances] == ["shop-dev"]
    # a viewer may not change anything, even of their own team
    build = await c.post("/v1/apps/shop/builds", headers=viewer)
    assert build.status_code == 403
    assert "maintainer" in build.json()["detail"]
    assert (await c.post(f"/v1/builds/{BUILD}/cancel", headers=viewer)).status_code == 403
    assert (await c.delete("/v1/instances/shop-dev", headers=viewer)).status_code == 403
    assert ("POST", "appmanager/apps/shop/builds") not in gateway.upstream.calls


async def test_maintainer_changes_their_apps_only(gateway: Gateway) -> None:
    gateway.upstream.apps.update({"shop": "a", "bank": "b"})
    gateway.upstream.instances.update({"shop-dev": "shop", "bank-dev": "bank"})
    maintainer = gateway.auth(await gateway.user("a", "maintainer"))
    c = gateway.client
    assert (await c.post("/v1/apps/shop/builds", headers=maintainer)).status_code == 200
    assert (await c.post("/v1/apps/bank/builds", headers=maintainer)).status_code == 404
    launch = "apiVersion: opsline.io/v1\nkind: Launch\napp: {}\n"
    ok = await c.post("/v1/deployments", content=launch.format("shop"), headers=maintainer)
    assert ok.status_code == 200
    other = await c.post("/v1/deployments", content=launch.format("bank"), headers=maintainer)
    assert other.status_code == 404
    # onto another team's instance: taken, without naming what runs there
    onto = launch.format("shop") + "instance: bank-dev\n"
    taken = await c.post("/v1/deployments", content=onto, headers=maintainer)
    assert taken.status_code == 409 and "bank" not in taken.json()["detail"].replace("bank-dev", "")
    staged = launch.format("shop") + "target: {stage: dev}\n"  # shop-dev: theirs, fine
    assert (await c.post("/v1/deployments", content=staged, headers=maintainer)).status_code == 200
    assert (await c.post("/v1/instances/shop-dev/rollback", headers=maintainer)).status_code == 200
    assert (await c.post("/v1/instances/bank-dev/rollback", headers=maintainer)).status_code == 404
    assert ("POST", "appmanager/instances/bank-dev/rollback") not in gateway.upstream.calls
    # team membership is for team admins
    r = await c.put("/v1/teams/a/members/someone", json={"role": "viewer"}, headers=maintainer)
    assert r.status_code == 403


async def test_apply_needs_maintainer_of_meta_team(gateway: Gateway) -> None:
    gateway.upstream.apps.update({"bank": "b"})
    maintainer = gateway.auth(await gateway.user("a", "maintainer"))
    viewer = gateway.auth(await gateway.user("a", "viewer"))
    c = gateway.client
    spec = "meta:\n  name: {}\n  team: {}\ncomponents: []\n"
    assert (
        await c.post("/v1/apps:apply", content=spec.format("shop", "a"), headers=maintainer)
    ).status_code == 200
    assert (
        await c.post("/v1/apps:apply", content=spec.format("shop", "a"), headers=viewer)
    ).status_code == 403
    refused = await c.post("/v1/apps:apply", content=spec.format("shop", "b"), headers=maintainer)
    assert refused.status_code == 403
    assert "meta.team" in refused.json()["detail"]
    # another team's app name: taken, without saying whose
    taken = await c.post("/v1/apps:apply", content=spec.format("bank", "a"), headers=maintainer)
    assert taken.status_code == 409
    assert "'b'" not in taken.text
    # meta.team defaults to "default", as in the appmanager
    default = await c.post("/v1/apps:apply", content="meta: {name: x}\n", headers=maintainer)
    assert default.status_code == 403
    # a file the gateway cannot read goes on to the appmanager, which says why (for writers)
    broken = await c.post("/v1/apps:apply", content=b"meta: [unclosed", headers=maintainer)
    assert broken.status_code == 200 and gateway.upstream.calls[-1] == (
        "POST",
        "appmanager/apps:apply",
    )
    assert (await c.post("/v1/apps:apply", content=b"meta: [", headers=viewer)).status_code == 403


async def test_token_scopes_narrow_roles(gateway: Gateway) -> None:
    gateway.upstream.apps.update({"shop": "a"})
    read_only = gateway.auth(await gateway.user("a", "maintainer", scopes=["read"]))
    c = gateway.client
    assert (await c.get("/v1/apps/shop", headers=read_only)).status_code == 200
    refused = await c.post("/v1/apps/shop/builds", headers=read_only)
    assert refused.status_code == 403
    assert "scopes (read) do not include 'write'" in refused.json()["detail"]
    # nor can it mint itself a wider one
    wider = await c.post("/v1/tokens", json={"name": "w", "scopes": ["write"]}, headers=read_only)
    assert wider.status_code == 403
    # a read token of the platform admin cannot change things either
    r = await c.post("/v1/tokens", json={"name": "ro", "scopes": ["read"]}, headers=gateway.auth())
    admin_ro = gateway.auth(r.json()["token"])
    assert (await c.post("/v1/apps/shop/builds", headers=admin_ro)).status_code == 403
    assert (await c.get("/v1/apps/shop", headers=admin_ro)).status_code == 200


async def test_queries_are_scoped_to_an_app_the_caller_reads(gateway: Gateway) -> None:
    gateway.upstream.apps.update({"shop": "a", "bank": "b"})
    viewer = gateway.auth(await gateway.user("a", "viewer"))
    c = gateway.client
    base = {"name": "cpu", "start": "0", "end": "1"}
    for path in ("/v1/metrics/query", "/v1/metrics/series", "/v1/logs/search"):
        bare = await c.get(path, params=base, headers=viewer)
        assert bare.status_code == 403 and "match=app=" in bare.json()["detail"], path
        regex = await c.get(path, params={**base, "match": "app=~.*"}, headers=viewer)
        assert regex.status_code == 403
        other = await c.get(path, params={**base, "match": "app=bank"}, headers=viewer)
        assert other.status_code == 404
        mine = await c.get(path, params={**base, "match": ["app=shop", "job=x"]}, headers=viewer)
        assert mine.status_code == 200, path
        both = await c.get(path, params={**base, "match": ["app=shop", "app=bank"]}, headers=viewer)
        assert both.status_code == 404
    admin = await c.get("/v1/metrics/query", params=base, headers=gateway.auth())
    assert admin.status_code == 200


async def test_scrape_targets_by_their_app(gateway: Gateway) -> None:
    gateway.upstream.apps.update({"shop": "a", "bank": "b"})
    gateway.upstream.targets.update({BUILD: "shop", OTHER_BUILD: "bank"})
    maintainer = gateway.auth(await gateway.user("a", "maintainer"))
    c = gateway.client
    listed = (await c.get("/v1/scrape/targets", headers=maintainer)).json()
    assert listed == {"targets": [{"id": BUILD, "app": "shop"}], "total": 1}
    assert (await c.get(f"/v1/scrape/targets/{OTHER_BUILD}", headers=maintainer)).status_code == 404
    assert (await c.delete(f"/v1/scrape/targets/{BUILD}", headers=maintainer)).status_code == 200
    new = {"url": "http://x:9100/metrics", "job": "node"}
    assert (
        await c.post("/v1/scrape/targets", json={**new, "app": "shop"}, headers=maintainer)
    ).status_code == 200
    assert (
        await c.post("/v1/scrape/targets", json={**new, "app": "bank"}, headers=maintainer)
    ).status_code == 404
    assert (await c.post("/v1/scrape/targets", json=new, headers=maintainer)).status_code == 403
    # JSON only another parser would read (NaN, Infinity) never reaches the owner
    before = len(gateway.upstream.calls)
    for odd in (b'{"app": "bank", "x": NaN}', b'{"app": "bank", "x": -Infinity}'):
        refused = await c.post("/v1/scrape/targets", content=odd, headers=maintainer)
        assert refused.status_code == 422, refused.text
        market = {**maintainer, "content-type": "application/json"}
        assert (await c.post("/v1/market/publish", content=odd, headers=market)).status_code == 422
    assert len(gateway.upstream.calls) == before


async def test_platform_only_routes(gateway: Gateway) -> None:
    team_admin = gateway.auth(await gateway.user("a", "admin"))
    c = gateway.client
    for method, path, body in (
        ("PUT", "/v1/clusters/prod", {"kubeconfig": "x"}),
        ("DELETE", "/v1/clusters/prod", None),
        ("POST", "/v1/users", {"name": "mallory"}),
        ("POST", "/v1/teams", {"name": "c"}),
        ("GET", "/v1/users", None),
    ):
        response = await c.request(method, path, json=body, headers=team_admin)
        assert response.status_code == 403, (method, path)
        assert response.json()["detail"] == "only platform admins may do this"
    assert (await c.get("/v1/clusters", headers=team_admin)).status_code == 200


async def test_owner_unreachable_is_503_not_a_pass(gateway: Gateway) -> None:
    viewer = gateway.auth(await gateway.user("a", "viewer"))

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    gateway.app.state.owners._http = httpx.AsyncClient(transport=httpx.MockTransport(down))
    response = await gateway.client.get("/v1/apps/shop", headers=viewer)
    assert response.status_code == 503
    assert "cannot tell who owns this" in response.json()["detail"]


@pytest.mark.parametrize("role", ["viewer", "maintainer", "admin"])
async def test_team_routes_by_role(gateway: Gateway, role: str) -> None:
    member = gateway.auth(await gateway.user("a", role))
    await gateway.team("b")
    c = gateway.client
    assert (await c.get("/v1/teams/a/members", headers=member)).status_code == 200
    assert (await c.get("/v1/teams/b/members", headers=member)).status_code == 404
    assert [t["name"] for t in (await c.get("/v1/teams", headers=member)).json()["teams"]] == ["a"]
    newcomer = (
        await c.post("/v1/users", json={"name": f"n-{role}"}, headers=gateway.auth())
    ).json()
    add = await c.put(
        f"/v1/teams/a/members/{newcomer['name']}", json={"role": "viewer"}, headers=member
    )
    assert add.status_code == (200 if role == "admin" else 403)


class _Recorder:
    """Stands in for the Kafka publisher: what would have gone to ingest.raw."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, topic: str, event: Any, key: str) -> asyncio.Future[None]:
        self.sent.append(event.id)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_publishing_is_for_the_apps_the_caller_maintains(gateway: Gateway) -> None:
    gateway.upstream.apps.update({"shop": "a", "bank": "b"})
    recorder = _Recorder()
    gateway.app.state.publisher = recorder
    maintainer = gateway.auth(await gateway.user("a", "maintainer"))
    viewer = gateway.auth(await gateway.user("a", "viewer"))

    def metrics(ident: str, app: str) -> dict[str, Any]:
        sample = {"name": "cpu", "labels": {"app": app}, "value": 1}
        return {
            "specversion": "1.0",
            "id": ident,
            "source": "ci",
            "type": "io.opsline.metric.batch",
            "data": {"samples": [sample]},
        }

    batch = [
        metrics("mine", "shop"),
        metrics("theirs", "bank"),
        {
            "specversion": "1.0",
            "id": "ops",
            "source": "ci",
            "type": "com.ci.done",
            "data": {"app": "bank"},
        },
    ]
    headers = {"content-type": "application/cloudevents-batch+json"}
    answer = await gateway.client.post("/v1/events", json=batch, headers={**maintainer, **headers})
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == ["mine"] and recorder.sent == ["mine"]
    assert [r["id"] for r in answer.json()["rejected"]] == ["theirs", "ops"]
    assert "not allowed to publish for app 'bank'" in answer.json()["rejected"][0]["reason"]
    refused = await gateway.client.post("/v1/events", json=batch, headers={**viewer, **headers})
    assert refused.status_code == 403
    everything = await gateway.client.post(
        "/v1/events", json=batch, headers={**gateway.auth(), **headers}
    )
    assert everything.json()["accepted"] == ["mine", "theirs", "ops"]


async def test_odd_input_is_refused_cleanly_never_a_500(gateway: Gateway) -> None:
    maintainer = gateway.auth(await gateway.user("a", "maintainer"))
    c = gateway.client
    deep = b"[" * 5000 + b"]" * 5000
    for path in ("/v1/apps:apply", "/v1/deployments"):
        response = await c.post(path, content=deep, headers=maintainer)
        assert response.status_code == 422, (path, response.text)
        big = await c.post(path, content=b"# " + b"x" * 300_000, headers=maintainer)
        assert big.status_code == 413, (path, big.text)
    assert gateway.upstream.calls == []
    odd = await c.post("/v1/apps:apply", content=b"meta: {name: 7, team: [a]}", headers=maintainer)
    assert odd.status_code < 500
    assert (await c.delete(f"/v1/tokens/{2**70}", headers=maintainer)).status_code == 422
    before = len(gateway.upstream.calls)
    assert (await c.get("/v1/apps/a.b", headers=maintainer)).status_code == 404
    assert (await c.get("/v1/instances/x_y.z", headers=maintainer)).status_code == 404
    assert len(gateway.upstream.calls) == before  # nothing odd was put in an owner's URL


async def test_alerts_and_incidents_by_their_app(gateway: Gateway) -> None:
    served = served_routes(gateway.app)
    if ("GET", "/v1/alerts") not in served:
        pytest.skip("this checkout has no alert routes (services/gateway/alerts.py)")
    gateway.upstream.apps.update({"shop": "a", "bank": "b"})
    gateway.upstream.alerts.update({"f-shop": "shop", "f-bank": "bank", "f-none": ""})
    viewer = gateway.auth(await gateway.user("a", "viewer"))
    c = gateway.client
    for path, key in (("/v1/alerts", "alerts"), ("/v1/incidents", "incidents")):
        listed = (await c.get(path, headers=viewer)).json()[key]
        assert [a["app"] for a in listed] == ["shop"], path
        assert len((await c.get(path, headers=gateway.auth())).json()[key]) == 3
    assert (await c.get("/v1/alerts/f-shop", headers=viewer)).status_code == 200
    for hidden in ("f-bank", "f-none"):
        assert (await c.get(f"/v1/alerts/{hidden}", headers=viewer)).status_code == 404
        assert (await c.get(f"/v1/incidents/{hidden}", headers=viewer)).status_code == 404
    assert (await c.get("/v1/apps/bank/health", headers=viewer)).status_code == 404
    assert (await c.get("/v1/apps/shop/health", headers=viewer)).status_code == 200
    for method, path in (
        ("GET", "/v1/alert-rules"),
        ("POST", "/v1/silences"),
        ("GET", "/v1/notifications/receivers"),
    ):
        refused = await c.request(method, path, json={}, headers=viewer)
        assert refused.status_code == 403, path
