"""/v1 routes for identity: users, teams and their members, API tokens, whoami.

Who may call each is in services/gateway/policies.py; the handlers only narrow what a
caller sees to what is theirs (their tokens, their teams).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from services.gateway import service
from services.gateway.deps import Caller, CurrentCaller, SessionDep, forget_cached_callers
from services.gateway.models import NAME, ROLES, SCOPES, USER_NAME, Token, User, aware

router = APIRouter(prefix="/v1", tags=["identity"])

UserName = Annotated[str, Path(pattern=USER_NAME)]
TeamName = Annotated[str, Path(pattern=NAME)]
MAX_EXPIRY = timedelta(days=3650)


class UserCreate(BaseModel):
    name: str = Field(pattern=USER_NAME)
    display_name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=320)
    platform_admin: bool = False


class UserUpdate(BaseModel):
    display_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    platform_admin: bool | None = None
    disabled: bool | None = Field(default=None, description="false: enable again")


class TeamCreate(BaseModel):
    name: str = Field(pattern=NAME)
    description: str = Field(default="", max_length=500)


class MemberSet(BaseModel):
    role: str = Field(pattern="^(viewer|maintainer|admin)$", description=" | ".join(ROLES))


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    scopes: list[str] | None = Field(
        default=None, description="read, write, admin; default: those of the token you use"
    )
    expires_in_s: int | None = Field(default=None, gt=0, description="default: never")
    rate_limit_per_s: float | None = Field(default=None, gt=0, le=100_000)
    rate_limit_burst: int | None = Field(default=None, gt=0, le=1_000_000)


def user_view(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "display_name": user.display_name,
        "email": user.email,
        "platform_admin": user.platform_admin,
        "source": user.source,
        "created_at": user.created_at,
        "disabled": user.disabled_at is not None,
    }


def token_view(token: Token) -> dict[str, Any]:
    """A token as anyone may see it: never its secret nor its hash."""
    state = "revoked" if token.revoked_at else "active" if service.is_live(token) else "expired"
    return {
        "id": token.id,
        "name": token.name,
        "scopes": token.scopes.split(),
        "state": state,
        "created_at": token.created_at,
        "expires_at": aware(token.expires_at),
        "revoked_at": aware(token.revoked_at),
        "last_used_at": aware(token.last_used_at),
        "rate_limit_per_s": token.rate_limit_per_s,
        "rate_limit_burst": token.rate_limit_burst,
    }


@contextlib.contextmanager
def _http_errors() -> Iterator[None]:
    try:
        yield
    except service.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except service.Conflict as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/whoami", summary="Who this token is: user, teams and roles, token, scopes")
async def whoami(caller: CurrentCaller) -> dict[str, Any]:
    return {
        "user": caller.user,
        "platform_admin": caller.platform_admin,
        "teams": dict(sorted(caller.roles.items())),
        "auth": "oidc" if caller.token_id is None else "token",
        "token": None
        if caller.token_id is None
        else {"id": caller.token_id, "name": caller.name, "expires_at": caller.expires_at},
        "scopes": sorted(caller.scopes),
    }


# ------------------------------------------------------------------ users


@router.post("/users", status_code=201, summary="Create a user (platform admins)")
async def create_user(session: SessionDep, body: Annotated[UserCreate, Body()]) -> dict[str, Any]:
    with _http_errors():
        user = await service.create_user(session=session, **body.model_dump())
    return user_view(user)


@router.get("/users", summary="Every user (platform admins)")
async def list_users(session: SessionDep) -> dict[str, Any]:
    return {"users": [user_view(u) for u in await service.get_all_users(session=session)]}


@router.get("/users/{name}", summary="A user and their teams (yourself, or platform admins)")
async def get_user(session: SessionDep, caller: CurrentCaller, name: UserName) -> dict[str, Any]:
    if name != caller.user and not caller.platform_admin:
        raise HTTPException(404, f"no user named {name!r}")
    with _http_errors():
        user = await service.get_user(session=session, name=name)
    assert user.id is not None
    roles = await service.roles_of(session=session, user_id=user.id)
    return {**user_view(user), "teams": dict(sorted(roles.items()))}


@router.patch(
    "/users/{name}",
    summary="Change a user: display name, e-mail, platform admin, disabled (platform admins)",
)
async def update_user(
    request: Request, session: SessionDep, name: UserName, body: Annotated[UserUpdate, Body()]
) -> dict[str, Any]:
    with _http_errors():
        user = await service.update_user(
            session=session, name=name, changes=body.model_dump(exclude_none=True)
        )
    forget_cached_callers(request)
    return user_view(user)


@router.delete("/users/{name}", summary="Disable a user and revoke their tokens")
async def disable_user(request: Request, session: SessionDep, name: UserName) -> dict[str, Any]:
    with _http_errors():
        user = await service.disable_user(session=session, name=name)
    forget_cached_callers(request)
    return user_view(user)


@router.post(
    "/users/{name}/tokens",
    status_code=201,
    summary="Create a token for a user (platform admins; how a new user gets their first)",
)
async def create_user_token(
    session: SessionDep, caller: CurrentCaller, name: UserName, body: Annotated[TokenCreate, Body()]
) -> dict[str, Any]:
    with _http_errors():
        user = await service.get_user(session=session, name=name)
    if user.disabled_at is not None:
        raise HTTPException(409, f"user {name!r} is disabled")
    assert user.id is not None
    return await _new_token(session, caller, user.id, body)


# ------------------------------------------------------------------ tokens


@router.post("/tokens", status_code=201, summary="Create a token for yourself (shown once)")
async def create_token(
    session: SessionDep, caller: CurrentCaller, body: Annotated[TokenCreate, Body()]
) -> dict[str, Any]:
    if caller.user_id is None:
        raise HTTPException(403, "this caller has no user")
    return await _new_token(session, caller, caller.user_id, body)


async def _new_token(
    session: SessionDep, caller: Caller, user_id: int, body: TokenCreate
) -> dict[str, Any]:
    scopes = body.scopes if body.scopes is not None else sorted(caller.scopes)
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise HTTPException(422, f"scopes must be some of {', '.join(SCOPES)}")
    wider = set(scopes) - set(caller.scopes)
    if wider:
        raise HTTPException(
            403, f"a token cannot grant scopes it lacks itself: {', '.join(sorted(wider))}"
        )
    expires_at = None
    if body.expires_in_s is not None:
        expires_at = datetime.now(UTC) + min(timedelta(seconds=body.expires_in_s), MAX_EXPIRY)
    if caller.expires_at is not None and (expires_at is None or expires_at > caller.expires_at):
        expires_at = caller.expires_at  # a token never outlives the one that made it
    with _http_errors():
        token, secret = await service.create_token(
            session=session,
            user_id=user_id,
            name=body.name,
            scopes=scopes,
            expires_at=expires_at,
            rate_limit_per_s=body.rate_limit_per_s,
            rate_limit_burst=body.rate_limit_burst,
        )
    return {**token_view(token), "token": secret}


@router.get("/tokens", summary="Your tokens (never their secrets); platform admins: ?user=")
async def list_tokens(
    session: SessionDep,
    caller: CurrentCaller,
    user: Annotated[str | None, Query(pattern=USER_NAME)] = None,
) -> dict[str, Any]:
    user_id = caller.user_id
    if user is not None and user != caller.user:
        if not caller.platform_admin:
            raise HTTPException(404, f"no user named {user!r}")
        with _http_errors():
            user_id = (await service.get_user(session=session, name=user)).id
    if user_id is None:
        return {"tokens": []}
    return {
        "tokens": [token_view(t) for t in await service.tokens_of(session=session, user_id=user_id)]
    }


@router.delete("/tokens/{token_id}", summary="Revoke a token (yours; platform admins: any)")
async def revoke_token(
    request: Request,
    session: SessionDep,
    caller: CurrentCaller,
    token_id: Annotated[int, Path(ge=1, le=2**62)],
) -> dict[str, Any]:
    if token_id != caller.token_id and "write" not in caller.scopes:
        raise HTTPException(403, "revoking another token needs the 'write' scope")
    owner = None if caller.platform_admin else caller.user_id
    with _http_errors():
        token = await service.revoke_token(session=session, token_id=token_id, user_id=owner)
    forget_cached_callers(request)
    return token_view(token)


# ------------------------------------------------------------------ teams


@router.post("/teams", status_code=201, summary="Create a team (platform admins)")
async def create_team(session: SessionDep, body: Annotated[TeamCreate, Body()]) -> dict[str, Any]:
    with _http_errors():
        team = await service.create_team(session=session, **body.model_dump())
    return {"name": team.name, "description": team.description, "created_at": team.created_at}


@router.get("/teams", summary="Your teams and your role in each (platform admins: all)")
async def list_teams(session: SessionDep, caller: CurrentCaller) -> dict[str, Any]:
    teams = await service.get_all_teams(session=session)
    return {
        "teams": [
            {"name": t.name, "description": t.description, "role": caller.roles.get(t.name)}
            for t in teams
            if caller.platform_admin or t.name in caller.roles
        ]
    }


@router.get("/teams/{team}", summary="A team")
async def get_team(session: SessionDep, caller: CurrentCaller, team: TeamName) -> dict[str, Any]:
    with _http_errors():
        found = await service.get_team(session=session, name=team)
    return {
        "name": found.name,
        "description": found.description,
        "created_at": found.created_at,
        "role": caller.roles.get(team),
    }


@router.delete("/teams/{team}", status_code=204, summary="Delete a team and its memberships")
async def delete_team(request: Request, session: SessionDep, team: TeamName) -> Response:
    with _http_errors():
        await service.delete_team(session=session, name=team)
    forget_cached_callers(request)
    return Response(status_code=204)


@router.get("/teams/{team}/members", summary="A team's members and their roles")
async def list_members(session: SessionDep, team: TeamName) -> dict[str, Any]:
    with _http_errors():
        found = await service.members(session=session, team=team)
    return {"members": [{"user": u.name, "role": m.role, "since": m.created_at} for u, m in found]}


@router.put(
    "/teams/{team}/members/{user}",
    summary="Add a user to a team, or change their role (team or platform admins)",
)
async def set_member(
    request: Request,
    session: SessionDep,
    team: TeamName,
    user: UserName,
    body: Annotated[MemberSet, Body()],
) -> dict[str, Any]:
    with _http_errors():
        membership = await service.set_member(session=session, team=team, user=user, role=body.role)
    forget_cached_callers(request)
    return {"team": team, "user": user, "role": membership.role}


@router.delete("/teams/{team}/members/{user}", status_code=204, summary="Remove a member")
async def remove_member(
    request: Request, session: SessionDep, team: TeamName, user: UserName
) -> Response:
    with _http_errors():
        await service.remove_member(session=session, team=team, user=user)
    forget_cached_callers(request)
    return Response(status_code=204)
