"""The audit log: every mutating request with who, what, when and outcome; team admins see
their team's; no bodies, no credentials, no query strings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from services.gateway import audit
from services.gateway.models import AuditRecord
from tests.gateway.conftest import Gateway, audit_record


async def test_mutations_are_recorded_with_outcome_and_reads_are_not(gateway: Gateway) -> None:
    gateway.upstream.apps.update({"shop": "a", "bank": "b"})
    c = gateway.client
    maintainer = await gateway.user("a", "maintainer")
    me = (await c.get("/v1/whoami", headers=gateway.auth(maintainer))).json()["user"]
    ok = await c.post(
        "/v1/apps/shop/builds?token=opl_secret_in_query",
        json={"version": "1.0.0"},
        headers={**gateway.auth(maintainer), "X-Request-ID": "req-42"},
    )
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "req-42"
    assert (
        await c.post("/v1/apps/bank/builds", headers=gateway.auth(maintainer))
    ).status_code == 404
    assert (
        await c.post("/v1/apps/shop/builds", headers=gateway.auth("opl_wrong"))
    ).status_code == 401
    await c.get("/v1/apps/shop", headers=gateway.auth(maintainer))

    records = (await c.get("/v1/audit", params={"user": me}, headers=gateway.auth())).json()[
        "records"
    ]
    assert [(r["path"], r["status"], r["outcome"]) for r in records] == [
        ("/v1/apps/bank/builds", 404, "denied"),  # another team's: 404 to them, denied here
        ("/v1/apps/shop/builds", 200, "ok"),
    ]
    first = records[1]
    assert first["request_id"] == "req-42"
    assert first["method"] == "POST" and first["route"] == "/v1/apps/{app}/builds"
    assert first["team"] == "a" and first["app"] == "shop" and first["duration_ms"] > 0
    anonymous = (
        await c.get("/v1/audit", params={"outcome": "denied"}, headers=gateway.auth())
    ).json()
    assert anonymous["records"][0]["user"] == "" and anonymous["records"][0]["status"] == 401
    assert "invalid, expired or revoked" in anonymous["records"][0]["reason"]
    everything = (await c.get("/v1/audit", params={"limit": 1000}, headers=gateway.auth())).text
    for secret in ("opl_secret_in_query", maintainer, "1.0.0", "opl_wrong"):
        assert secret not in everything


async def test_team_admins_see_their_teams_records_only(gateway: Gateway) -> None:
    gateway.upstream.apps.update({"shop": "a", "bank": "b"})
    c = gateway.client
    for team, app in (("a", "shop"), ("b", "bank")):
        maintainer = await gateway.user(team, "maintainer")
        await c.post(f"/v1/apps/{app}/builds", headers=gateway.auth(maintainer))
    admin_a = await gateway.user("a", "admin")
    seen = (await c.get("/v1/audit", headers=gateway.auth(admin_a))).json()["records"]
    assert seen and {r["team"] for r in seen} == {"a"}
    viewer = await gateway.user("a", "viewer")
    assert (await c.get("/v1/audit", headers=gateway.auth(viewer))).status_code == 403
    everything = (await c.get("/v1/audit", headers=gateway.auth())).json()["records"]
    assert {"a", "b"} <= {r["team"] for r in everything}


async def test_denied_by_role_is_recorded_under_the_team(gateway: Gateway) -> None:
    gateway.upstream.apps.update({"shop": "a"})
    viewer = await gateway.user("a", "viewer")
    await gateway.client.delete("/v1/instances/none", headers=gateway.auth(viewer))
    await gateway.client.post("/v1/apps/shop/builds", headers=gateway.auth(viewer))
    admin_a = await gateway.user("a", "admin")
    seen = (await gateway.client.get("/v1/audit", headers=gateway.auth(admin_a))).json()["records"]
    denied = [r for r in seen if r["outcome"] == "denied"]
    assert denied[0]["path"] == "/v1/apps/shop/builds" and denied[0]["status"] == 403
    assert "needs the maintainer role" in denied[0]["reason"]


async def test_filters_and_paging(gateway: Gateway) -> None:
    c = gateway.client
    for n in range(5):
        await c.post("/v1/teams", json={"name": f"t{n}"}, headers=gateway.auth())
    page = (await c.get("/v1/audit", params={"limit": 2}, headers=gateway.auth())).json()["records"]
    assert len(page) == 2
    rest = (
        await c.get("/v1/audit", params={"before_id": page[-1]["id"]}, headers=gateway.auth())
    ).json()["records"]
    assert all(r["id"] < page[-1]["id"] for r in rest) and len(rest) >= 3
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = await c.get("/v1/audit", params={"since": future}, headers=gateway.auth())
    assert later.json()["records"] == []


async def test_retention_prunes_old_records(gateway: Gateway) -> None:
    async with gateway.sessions() as session:
        session.add(audit_record("old", timedelta(days=400)))
        session.add(audit_record("new"))
        await session.commit()
    assert await audit.prune(gateway.sessions, days=365) == 1
    async with gateway.sessions() as session:
        left = [r.request_id for r in (await session.exec(select(AuditRecord))).all()]
    assert left == ["new"]


async def test_scope_refusals_and_nested_routes_are_recorded_fully(gateway: Gateway) -> None:
    gateway.upstream.apps.update({"shop": "a"})
    gateway.upstream.targets["0f0e7a52-9a7b-4c5e-8d3f-2b1c0d9e8f7a"] = "shop"
    read_only = await gateway.user("a", "maintainer", scopes=["read"])
    await gateway.client.post("/v1/apps/shop/builds", headers=gateway.auth(read_only))
    await gateway.client.delete(
        "/v1/scrape/targets/0f0e7a52-9a7b-4c5e-8d3f-2b1c0d9e8f7a", headers=gateway.auth()
    )
    admin_a = await gateway.user("a", "admin")
    seen = (await gateway.client.get("/v1/audit", headers=gateway.auth(admin_a))).json()["records"]
    refused = next(r for r in seen if r["outcome"] == "denied")
    assert refused["team"] == "a" and "do not include 'write'" in refused["reason"]
    deleted = next(r for r in seen if r["method"] == "DELETE")
    assert deleted["route"] == "/v1/scrape/targets/{target_id}" and deleted["user"] == "admin"
