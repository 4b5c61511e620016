"""Users, teams, memberships and tokens: secrets shown once and stored hashed, scopes,
expiry, revocation, the bootstrap admin and tokens carried over from the old table."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select

from libs import db
from services.gateway import service
from services.gateway.models import TABLES, ApiToken, Token, User
from tests.gateway.conftest import Gateway


async def test_token_secret_is_shown_once_and_stored_hashed(gateway: Gateway) -> None:
    c = gateway.client
    created = await c.post("/v1/tokens", json={"name": "ci"}, headers=gateway.auth())
    assert created.status_code == 201
    secret = created.json()["token"]
    assert secret.startswith("opl_") and len(secret) > 40
    listed = await c.get("/v1/tokens", headers=gateway.auth())
    assert secret not in listed.text
    assert {"ci", "admin"} <= {t["name"] for t in listed.json()["tokens"]}
    async with gateway.sessions() as session:
        rows = (await session.exec(select(Token))).all()
    assert all(secret not in (r.token_hash, r.name) for r in rows)
    assert service.hash_token(secret) in {r.token_hash for r in rows}
    # the new token works, and says who it is
    me = await c.get("/v1/whoami", headers=gateway.auth(secret))
    assert me.json()["user"] == "admin" and me.json()["token"]["name"] == "ci"
    # the same name twice is refused; the audit log never holds the secret
    again = await c.post("/v1/tokens", json={"name": "ci"}, headers=gateway.auth())
    assert again.status_code == 409
    audit = await c.get("/v1/audit", headers=gateway.auth())
    assert secret not in audit.text and "Bearer" not in audit.text


async def test_revoked_token_is_refused_at_once(gateway: Gateway) -> None:
    c = gateway.client
    token = (await c.post("/v1/tokens", json={"name": "x"}, headers=gateway.auth())).json()
    assert (await c.get("/v1/whoami", headers=gateway.auth(token["token"]))).status_code == 200
    revoked = await c.delete(f"/v1/tokens/{token['id']}", headers=gateway.auth())
    assert revoked.json()["state"] == "revoked"
    refused = await c.get("/v1/whoami", headers=gateway.auth(token["token"]))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "invalid, expired or revoked token"
    # its name is free again; the revoked one keeps its id and history
    again = await c.post("/v1/tokens", json={"name": "x"}, headers=gateway.auth())
    assert again.status_code == 201 and again.json()["id"] != token["id"]
    listed = {
        t["id"]: t for t in (await c.get("/v1/tokens", headers=gateway.auth())).json()["tokens"]
    }
    assert listed[token["id"]]["name"] == f"x.old-{token['id']}"
    assert listed[token["id"]]["state"] == "revoked"


async def test_expired_token_is_refused(gateway: Gateway) -> None:
    c = gateway.client
    token = (
        await c.post(
            "/v1/tokens", json={"name": "short", "expires_in_s": 1}, headers=gateway.auth()
        )
    ).json()
    assert token["expires_at"] is not None
    assert (await c.get("/v1/whoami", headers=gateway.auth(token["token"]))).status_code == 200
    await asyncio.sleep(1.2)
    assert (await c.get("/v1/whoami", headers=gateway.auth(token["token"]))).status_code == 401
    listed = (await c.get("/v1/tokens", headers=gateway.auth())).json()["tokens"]
    assert next(t for t in listed if t["name"] == "short")["state"] == "expired"


async def test_a_token_never_outlives_or_outranks_its_maker(gateway: Gateway) -> None:
    c = gateway.client
    parent = (
        await c.post(
            "/v1/tokens",
            json={"name": "p", "scopes": ["read", "write"], "expires_in_s": 600},
            headers=gateway.auth(),
        )
    ).json()
    child = await c.post(
        "/v1/tokens",
        json={"name": "c", "expires_in_s": 86400},
        headers=gateway.auth(parent["token"]),
    )
    assert child.status_code == 201
    assert child.json()["scopes"] == ["read", "write"]
    assert child.json()["expires_at"] == parent["expires_at"]
    admin_scope = await c.post(
        "/v1/tokens", json={"name": "d", "scopes": ["admin"]}, headers=gateway.auth(parent["token"])
    )
    assert admin_scope.status_code == 403
    bad = await c.post("/v1/tokens", json={"name": "e", "scopes": ["root"]}, headers=gateway.auth())
    assert bad.status_code == 422


async def test_users_see_and_revoke_only_their_own_tokens(gateway: Gateway) -> None:
    c = gateway.client
    alice, bob = await gateway.user("a"), await gateway.user("a")
    alice_tokens = (await c.get("/v1/tokens", headers=gateway.auth(alice))).json()["tokens"]
    bob_tokens = (await c.get("/v1/tokens", headers=gateway.auth(bob))).json()["tokens"]
    assert len(alice_tokens) == 1 and alice_tokens[0]["id"] != bob_tokens[0]["id"]
    steal = await c.delete(f"/v1/tokens/{bob_tokens[0]['id']}", headers=gateway.auth(alice))
    assert steal.status_code == 404
    assert (await c.get("/v1/whoami", headers=gateway.auth(bob))).status_code == 200
    peek = await c.get("/v1/tokens", params={"user": "admin"}, headers=gateway.auth(alice))
    assert peek.status_code == 404


async def test_membership_changes_apply_to_the_next_request(gateway: Gateway) -> None:
    c = gateway.client
    gateway.upstream.apps["shop"] = "a"
    token = await gateway.user("a", "viewer")
    me = (await c.get("/v1/whoami", headers=gateway.auth(token))).json()
    assert (await c.get("/v1/apps/shop", headers=gateway.auth(token))).status_code == 200
    removed = await c.delete(f"/v1/teams/a/members/{me['user']}", headers=gateway.auth())
    assert removed.status_code == 204
    assert (await c.get("/v1/apps/shop", headers=gateway.auth(token))).status_code == 404


async def test_disabled_user_loses_every_token(gateway: Gateway) -> None:
    c = gateway.client
    token = await gateway.user("a", "maintainer")
    name = (await c.get("/v1/whoami", headers=gateway.auth(token))).json()["user"]
    assert (await c.delete(f"/v1/users/{name}", headers=gateway.auth())).json()["disabled"]
    assert (await c.get("/v1/whoami", headers=gateway.auth(token))).status_code == 401
    refused = await c.delete("/v1/users/admin", headers=gateway.auth())
    assert refused.status_code == 409


async def test_bootstrap_admin_token_is_replaced_when_it_changes(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path}/g.db")
    await db.create_tables(engine, TABLES)
    sessions = db.session_factory(engine)
    async with sessions() as session:
        await service.ensure_admin_token(session=session, token="opl_one")
        await service.ensure_admin_token(session=session, token="opl_one")
        await service.ensure_admin_token(session=session, token="opl_two")
        assert await service.get_by_token(session=session, token="opl_one") is None
        found = await service.get_by_token(session=session, token="opl_two")
        assert found is not None and found[1].platform_admin and found[1].source == "bootstrap"
        assert len((await session.exec(select(User))).all()) == 1
    await engine.dispose()


async def test_tokens_of_the_old_table_are_carried_over_once(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path}/old.db")
    await db.create_tables(engine, [ApiToken])  # a gateway of the previous version
    sessions = db.session_factory(engine)
    expired = datetime.now(UTC) - timedelta(days=1)
    async with sessions() as session:
        session.add(ApiToken(name="admin", token_hash=service.hash_token("opl_admin")))
        session.add(ApiToken(name="ci", token_hash=service.hash_token("opl_ci")))
        session.add(
            ApiToken(name="old", token_hash=service.hash_token("opl_old"), expires_at=expired)
        )
        await session.commit()
    await db.create_tables(engine, TABLES)
    async with sessions() as session:
        await service.ensure_admin_token(session=session, token="opl_admin")
        assert await service.carry_over_legacy_tokens(engine, session=session) == 2
        assert await service.carry_over_legacy_tokens(engine, session=session) == 0
        ci = await service.get_by_token(session=session, token="opl_ci")
        assert ci is not None and ci[1].name == "admin"
        assert await service.get_by_token(session=session, token="opl_old") is None
        assert await service.get_by_token(session=session, token="opl_admin") is not None
    await engine.dispose()


async def test_platform_admins_promote_and_enable_users(gateway: Gateway) -> None:
    c = gateway.client
    token = await gateway.user("a", "viewer")
    name = (await c.get("/v1/whoami", headers=gateway.auth(token))).json()["user"]
    assert (await c.get("/v1/users", headers=gateway.auth(token))).status_code == 403
    promoted = await c.patch(
        f"/v1/users/{name}", json={"platform_admin": True}, headers=gateway.auth()
    )
    assert promoted.json()["platform_admin"] is True
    assert (await c.get("/v1/users", headers=gateway.auth(token))).status_code == 200
    # disabling revokes every token; enabling again does not bring them back
    await c.patch(f"/v1/users/{name}", json={"disabled": True}, headers=gateway.auth())
    assert (await c.get("/v1/whoami", headers=gateway.auth(token))).status_code == 401
    enabled = await c.patch(f"/v1/users/{name}", json={"disabled": False}, headers=gateway.auth())
    assert enabled.json()["disabled"] is False
    assert (await c.get("/v1/whoami", headers=gateway.auth(token))).status_code == 401
    fresh = await c.post(f"/v1/users/{name}/tokens", json={"name": "new"}, headers=gateway.auth())
    assert (
        await c.get("/v1/whoami", headers=gateway.auth(fresh.json()["token"]))
    ).status_code == 200
    demote = await c.patch(
        "/v1/users/admin", json={"platform_admin": False}, headers=gateway.auth()
    )
    assert demote.status_code == 409
