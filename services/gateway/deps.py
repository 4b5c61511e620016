"""Request dependencies: the caller behind the bearer token (an API token or an OIDC JWT),
with their roles, rate-limited per token; the database session."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from sqlmodel.ext.asyncio.session import AsyncSession

from services.gateway import limits, service
from services.gateway.models import SCOPES, USER_NAME, aware
from services.gateway.oidc import OidcError, OidcVerifier, looks_like_jwt

log = logging.getLogger(__name__)
_CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the token (None for OIDC), its scopes, the user and their roles."""

    token_id: int | None
    name: str  # the token's name; "oidc" for an OIDC token
    scopes: frozenset[str]
    user: str = ""
    user_id: int | None = None
    platform_admin: bool = False
    roles: Mapping[str, str] = field(default_factory=dict)  # team → role
    rate: tuple[float, int] | None = None  # this token's own, lower, limit
    bootstrap: bool = False  # the bootstrap admin token: break-glass, never rate limited
    expires_at: datetime | None = None

    @property
    def limit_key(self) -> str:
        return f"token:{self.token_id}" if self.token_id is not None else f"user:{self.user}"


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": "Bearer"}
    )


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("Authorization must be 'Bearer <token>'")
    return token


async def _from_api_token(request: Request, token: str) -> Caller:
    async with request.app.state.sessions() as session:
        found = await service.get_by_token(session=session, token=token)
        if found is None:
            raise _unauthorized("invalid, expired or revoked token")
        row, user = found
        assert row.id is not None and user.id is not None
        roles = await service.roles_of(session=session, user_id=user.id)
        await service.touch(session=session, token_id=row.id)
    rate = None
    if row.rate_limit_per_s is not None:
        rate = (row.rate_limit_per_s, row.rate_limit_burst or max(1, int(row.rate_limit_per_s)))
    return Caller(
        token_id=row.id,
        name=row.name,
        scopes=frozenset(row.scopes.split()),
        user=user.name,
        user_id=user.id,
        platform_admin=user.platform_admin,
        roles=roles,
        rate=rate,
        bootstrap=user.source == "bootstrap" and row.name == "admin",
        expires_at=aware(row.expires_at),
    )


async def _from_oidc(request: Request, verifier: OidcVerifier, token: str) -> Caller:
    import re

    try:
        claims = await verifier.verify(token)
        name = verifier.username(claims)
    except OidcError as exc:
        raise _unauthorized(f"OIDC token refused: {exc}") from None
    if not re.match(USER_NAME, name):
        raise _unauthorized("OIDC user name has characters opsline does not accept")
    async with request.app.state.sessions() as session:
        user = await service.ensure_user(session=session, name=name, source="oidc")
        if user.disabled_at is not None or user.id is None:
            raise _unauthorized("this user is disabled")
        roles = await service.roles_of(session=session, user_id=user.id)
    return Caller(
        token_id=None,
        name="oidc",
        scopes=frozenset(SCOPES),
        user=user.name,
        user_id=user.id,
        platform_admin=user.platform_admin,
        roles=roles,
    )


async def current_caller(request: Request) -> Caller:
    """The caller behind `Authorization: Bearer <token>`; 401 with the reason otherwise,
    429 with Retry-After past the token's rate."""
    known = getattr(request.state, "caller", None)
    if isinstance(known, Caller):
        return known
    token = _bearer(request)
    digest = service.hash_token(token)
    cache: dict[str, tuple[float, Caller]] = request.app.state.token_cache
    hit = cache.get(digest)
    now = time.monotonic()
    if hit and hit[0] > now and not _expired(hit[1]):
        caller = hit[1]
    else:
        cache.pop(digest, None)
        verifier: OidcVerifier | None = getattr(request.app.state, "oidc", None)
        if verifier is not None and looks_like_jwt(token):
            caller = await _from_oidc(request, verifier, token)
        else:
            caller = await _from_api_token(request, token)
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[digest] = (now + _CACHE_SECONDS, caller)
    _rate_limit(request, caller)
    request.state.caller = caller
    return caller


def _expired(caller: Caller) -> bool:
    return caller.expires_at is not None and caller.expires_at <= datetime.now(UTC)


def _rate_limit(request: Request, caller: Caller) -> None:
    settings: Any = request.app.state.settings
    limiter: limits.RateLimiter | None = getattr(request.app.state, "limiter", None)
    if limiter is None or caller.bootstrap:
        return
    rate, burst = settings.rate_limit_per_s, settings.rate_limit_burst
    if caller.rate is not None and rate > 0:
        rate, burst = min(rate, caller.rate[0]), min(burst, caller.rate[1])
    elif caller.rate is not None:
        rate, burst = caller.rate
    wait = limiter.take(caller.limit_key, rate=rate, burst=burst)
    if wait > 0:
        request.state.caller = caller  # the audit log still says who was throttled
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"rate limit of {rate:g} requests/s (burst {burst}) for this token exceeded; "
            f"retry in {wait:.1f}s",
            headers={"Retry-After": limits.retry_after(wait)},
        )


def forget_cached_callers(request: Request) -> None:
    """After a change of roles or tokens, this replica looks callers up afresh (others
    within the cache's few seconds)."""
    request.app.state.token_cache.clear()


CurrentCaller = Annotated[Caller, Depends(current_caller)]


async def get_session(request: Request):  # type: ignore[no-untyped-def]
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
