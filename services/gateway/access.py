"""Who may do what: one policy per /v1 route, checked by one dependency.

Roles per team: viewer (read), maintainer (read, write), admin (maintainer plus the team's
members). Platform admins (the bootstrap admin among them) may do everything. A token's
scopes (`read`, `write`, `admin`) narrow what its user's roles allow.

What a caller may not read does not exist for them: another team's app, build,
deployment or instance answers 404 exactly like a missing one. What they may read but
not change answers 403 with the role or scope it needs. A route without a policy is
refused (and a test fails): new routes cannot slip through unguarded.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from fastapi import HTTPException, Request

from libs.events.envelope import CloudEvent
from services.gateway import stream as live
from services.gateway.deps import Caller, current_caller
from services.gateway.owners import Owners, OwnerUnavailable
from services.gateway.policies import Policy, policy_for

UNKNOWN_TTL_S = 5.0
UNKNOWN_MAX = 1000
# The appmanager's limit for opsline.yaml and launch files (it answers 413 above it too).
SPEC_MAX_BYTES = 256 * 1024
RANK = {"viewer": 1, "maintainer": 2, "admin": 3}
NEEDED = {"read": 1, "write": 2, "admin": 3}
ROLE_FOR = {"read": "viewer", "write": "maintainer", "admin": "admin"}


@dataclass(frozen=True, slots=True)
class Grant:
    """What the policy check found, kept on the request for the answer and the audit log."""

    caller: Caller
    policy: Policy
    team: str = ""
    app: str = ""


def may(caller: Caller, action: str, team: str | None) -> bool:
    """Whether the caller's role on the team and the token's scopes allow the action."""
    if action != "any" and action not in caller.scopes:
        return False
    if caller.platform_admin:
        return True
    if team is None:
        return False
    return RANK.get(caller.roles.get(team, ""), 0) >= NEEDED.get(action, 1)


def may_read(caller: Caller, team: str | None) -> bool:
    """Reading ignores scopes beyond `read`: what a token may see is what its user may."""
    return caller.platform_admin or (team is not None and team in caller.roles)


def _scope(caller: Caller, action: str) -> None:
    if action != "any" and action not in caller.scopes:
        have = " ".join(sorted(caller.scopes)) or "none"
        raise HTTPException(403, f"this token's scopes ({have}) do not include {action!r}")


def _role(request: Request, grant: Grant) -> Grant:
    """The grant if the caller's role on its team allows the policy's action, else 403.

    Kept on the request either way, so a refusal is audited under the team it concerned.
    """
    request.state.grant = grant
    caller, action, team = grant.caller, grant.policy.action, grant.team
    _scope(caller, action)
    if not may(caller, action, team):
        role = caller.roles.get(team)
        has = f"you are a {role} of team {team!r}" if role else f"you are not in team {team!r}"
        raise HTTPException(403, f"{has}; this needs the {ROLE_FOR[action]} role")
    return grant


def _hidden(request: Request, missing: str) -> HTTPException:
    """404 as for something missing; the audit log knows it was a refusal."""
    request.state.refused = True
    return HTTPException(404, missing)


async def team_of(request: Request, app: str) -> str | None:
    return await owners_of(request).team_of(app)


def owners_of(request: Request) -> Owners:
    owners: Owners = request.app.state.owners
    return owners


async def authorize(request: Request) -> Grant | None:
    """The route's policy, applied; 401/403/404 as it says, 503 if an owner cannot be asked.

    An app-wide dependency, so every route has it, those added later included: routes
    outside /v1 (health, readiness, metrics) pass; a /v1 route without a policy is refused.
    """
    if not request.url.path.startswith("/v1/"):
        return None
    caller = await current_caller(request)
    found = policy_for(request.method, request.url.path)
    if found is None:
        raise HTTPException(403, "this route has no access policy; refusing")
    request.state.route = found[0]
    policy = found[1]
    try:
        grant = await _check(request, caller, policy)
    except OwnerUnavailable as exc:
        raise HTTPException(503, f"cannot tell who owns this: {exc}") from None
    request.state.grant = grant
    _scope(caller, policy.action)
    return grant


async def _check(request: Request, caller: Caller, policy: Policy) -> Grant:
    params = request.path_params
    target = policy.target
    if target == "caller":
        return Grant(caller, policy)
    if target == "platform":
        if not caller.platform_admin:
            raise HTTPException(403, "only platform admins may do this")
        return Grant(caller, policy)
    if target == "member":
        if not caller.platform_admin and not any(
            RANK.get(r, 0) >= NEEDED[policy.action] for r in caller.roles.values()
        ):
            raise HTTPException(403, f"this needs the {ROLE_FOR[policy.action]} role on some team")
        return Grant(caller, policy)
    if target == "team":
        team = params["team"]
        if not may_read(caller, team):
            raise HTTPException(404, f"no team named {team!r}")
        return _role(request, Grant(caller, policy, team=team))
    if target == "app":
        return await _on_app(
            request, caller, policy, params["app"], f"no app named {params['app']!r}"
        )
    if target in ("build", "deployment", "instance", "target"):
        ident = next(iter(params.values()))
        missing = f"no {target} {ident!r}"
        app = await owners_of(request).app_of(target, ident)
        if app is None:
            if caller.platform_admin:
                return Grant(caller, policy)  # the owner's own 404 (or an app-less target)
            raise HTTPException(404, missing)
        return await _on_app(request, caller, policy, app, missing)
    if target == "query":
        return await _on_query(request, caller, policy)
    if target in ("apply", "launch", "market", "new-target"):
        return await _on_body(request, caller, policy)
    raise HTTPException(403, f"unknown policy target {target!r}; refusing")


async def _on_app(
    request: Request, caller: Caller, policy: Policy, app: str, missing: str
) -> Grant:
    team = await owners_of(request).team_of(app)
    if team is None:
        if caller.platform_admin:
            return Grant(caller, policy, app=app)  # let the owner say it is missing
        raise HTTPException(404, missing)
    if not may_read(caller, team):
        raise _hidden(request, missing)
    return _role(request, Grant(caller, policy, team=team, app=app))


async def _on_query(request: Request, caller: Caller, policy: Policy) -> Grant:
    """Metric and log queries: a non-admin names the app (`match=app=<app>`) they may read."""
    apps = [
        m[len("app=") :]
        for m in request.query_params.getlist("match")
        if m.startswith("app=") and not m.startswith("app=~")
    ]
    if caller.platform_admin:
        return Grant(caller, policy, app=apps[0] if len(apps) == 1 else "")
    if not apps:
        raise HTTPException(
            403,
            "add match=app=<app> for an app of one of your teams (only platform "
            "admins query across apps)",
        )
    team = ""
    for app in apps:
        team = await owners_of(request).team_of(app) or ""
        if not may_read(caller, team or None):
            raise HTTPException(404, f"no app named {app!r}")
    return Grant(caller, policy, team=team, app=apps[0])


async def _on_body(request: Request, caller: Caller, policy: Policy) -> Grant:
    """Writes whose app or team is in the body: read it here, the route forwards it as is."""
    body = await request.body()
    if policy.target in ("apply", "launch") and len(body) > SPEC_MAX_BYTES:
        raise HTTPException(413, f"the document is larger than {SPEC_MAX_BYTES} bytes")
    try:
        # YAML is parsed in pure Python: off the event loop, so one big file stalls nothing
        found = await asyncio.to_thread(_app_in_body, policy.target, body)
    except RecursionError:
        raise HTTPException(422, "the document nests too deeply to be read") from None
    if found is None:
        if policy.target in ("market", "new-target"):
            # JSON parsers differ at the edges (NaN, huge numbers): what we cannot read
            # must not reach an owner that might read it differently
            raise HTTPException(422, "the body must be a JSON object with a string 'app'")
        # YAML the appmanager reads the same way (yaml.safe_load of the UTF-8 text): it
        # refuses it too, with its reasons; only writers get that far
        await _check(request, caller, Policy(policy.action, "member"))
        return Grant(caller, policy)
    app, team = found
    owner = await owners_of(request).team_of(app) if app else None
    if policy.target == "apply":
        if owner is not None and owner != team and not may_read(caller, owner):
            raise HTTPException(409, f"the app name {app!r} is taken; pick another")
        if not may_read(caller, team):
            raise HTTPException(403, f"you are not in team {team!r} (meta.team)")
        return _role(request, Grant(caller, policy, team=team, app=app))
    if owner is None:
        if caller.platform_admin:
            return Grant(caller, policy, app=app)
        if policy.target == "new-target" and not app:
            raise HTTPException(
                403,
                "set app to one of your team's apps (only platform "
                "admins register targets of no app)",
            )
        raise HTTPException(404, f"no app named {app!r}")
    if not may_read(caller, owner):
        raise _hidden(request, f"no app named {app!r}")
    grant = _role(request, Grant(caller, policy, team=owner, app=app))
    if policy.target == "launch" and not caller.platform_admin:
        instance = await asyncio.to_thread(_launch_instance, body)
        runs = await owners_of(request).app_of("instance", instance) if instance else None
        if runs is not None and runs != app and not may_read(caller, await team_of(request, runs)):
            # the appmanager would refuse it naming the other app: say less
            raise HTTPException(409, f"the instance name {instance!r} is taken; pick another")
    return grant


def _app_in_body(target: str, body: bytes) -> tuple[str, str] | None:
    """(app, team) named by the body: opsline.yaml (meta), a launch file, JSON with `app`."""
    try:
        data: Any = (
            orjson.loads(body)
            if target in ("market", "new-target")
            else yaml.safe_load(body.decode("utf-8"))
        )
    except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError):
        return None  # the owner refuses it with its reasons (it parses the same way)
    if not isinstance(data, dict):
        return None
    if target == "apply":
        meta = data.get("meta")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            return None
        team = meta.get("team", "default")
        return (meta["name"], team) if isinstance(team, str) else None
    app = data.get("app", "")
    if not isinstance(app, str) or (target != "new-target" and not app):
        return None
    return app, ""


def _launch_instance(body: bytes) -> str:
    """The instance a (readable) launch file targets: `instance`, else <app>-<stage>."""
    data = yaml.safe_load(body.decode("utf-8"))
    target = data.get("target") if isinstance(data.get("target"), dict) else {}
    stage = target.get("stage", "dev")
    named = data.get("instance") or f"{data.get('app')}-{stage}"[:63]
    return named if isinstance(named, str) else ""


# ------------------------------------------------------------------ answers


async def visible(request: Request, caller: Caller, item: dict[str, Any]) -> bool:
    """Whether the caller may see an item of an answer (by its `team`, else its `app`)."""
    if caller.platform_admin:
        return True
    team = item.get("team")
    if not isinstance(team, str):
        app = item.get("app")
        team = await owners_of(request).team_of(app) if isinstance(app, str) and app else None
    return may_read(caller, team)


async def shape(request: Request, status: int, content: bytes) -> bytes:
    """The owner's answer as this caller may see it: lists filtered, single items checked."""
    grant: Grant | None = getattr(request.state, "grant", None)
    if grant is None or not grant.policy.shape or status != 200 or grant.caller.platform_admin:
        return content
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content
    if not isinstance(data, dict):
        return content
    try:
        if grant.policy.shape == "item":
            if not await visible(request, grant.caller, data):
                raise HTTPException(404, "not found")
            return content
        key = grant.policy.shape
        items = data.get(key)
        if isinstance(items, list):
            kept = [
                i for i in items if isinstance(i, dict) and await visible(request, grant.caller, i)
            ]
            if len(kept) != len(items):
                data[key] = kept
                if isinstance(data.get("total"), int):
                    data["total"] = len(kept)
                return orjson.dumps(data)
    except OwnerUnavailable as exc:
        raise HTTPException(503, f"cannot tell who owns this: {exc}") from None
    return content


def event_filter(request: Request, caller: Caller, app: str | None) -> live.Allowed:
    """For the live stream: whether an event is for this caller (and its `app` filter)."""
    owners = owners_of(request)
    # apps the catalogue did not know, briefly: events naming made-up apps (anyone may
    # publish ops events) must not cost an appmanager call each, per open stream
    unknown: dict[str, float] = {}

    async def team(name: str) -> str | None:
        now = time.monotonic()
        if unknown.get(name, 0.0) > now:
            return None
        found = await owners.team_of(name)
        if found is None:
            if len(unknown) >= UNKNOWN_MAX:
                unknown.clear()
            unknown[name] = now + UNKNOWN_TTL_S
        return found

    async def allowed(event: CloudEvent) -> bool:
        name = live.app_of(event)
        try:
            if not name and (instance := live.instance_of(event)):
                name = await owners.app_of("instance", instance) or ""
            if app is not None and name != app:
                return False
            if caller.platform_admin:
                return True
            if not name or not caller.roles:
                return False
            return may_read(caller, await team(name))
        except OwnerUnavailable:
            return caller.platform_admin and app is None

    return allowed


def apps_in_event(event: CloudEvent) -> set[str]:
    """The apps an event from outside speaks for: each sample's or record's `labels.app`
    in metric and log batches, else the data's `app` (or `labels.app`)."""
    try:
        data = event.json() if event.data else None
    except ValueError:
        return set()
    if not isinstance(data, dict):
        return set()
    items = data.get("samples") or data.get("records")
    if isinstance(items, list):
        found = {live.app_in(i) for i in items}
    else:
        found = {live.app_in(data)}
    return found - {""}


async def refused_app(request: Request, caller: Caller, apps: set[str]) -> str | None:
    """The first app the caller may not write for (publishing its data), or None."""
    if caller.platform_admin:
        return None
    for app in sorted(apps):
        try:
            team = await owners_of(request).team_of(app)
        except OwnerUnavailable as exc:
            raise HTTPException(503, f"cannot tell who owns this: {exc}") from None
        if not may(caller, "write", team):
            return app
    return None
