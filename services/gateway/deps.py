"""Request dependencies: the caller's token, the database session, the publisher."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlmodel.ext.asyncio.session import AsyncSession

from services.gateway import service

_CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Caller:
    token_id: int
    name: str
    scopes: frozenset[str]


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": "Bearer"}
    )


async def current_caller(request: Request) -> Caller:
    """The caller behind `Authorization: Bearer <token>`; 401 with the reason otherwise."""
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("Authorization must be 'Bearer <token>'")
    digest = service.hash_token(token)
    cache: dict[str, tuple[float, Caller]] = request.app.state.token_cache
    hit = cache.get(digest)
    now = time.monotonic()
    if hit and hit[0] > now:
        return hit[1]
    async with request.app.state.sessions() as session:
        row = await service.get_by_token(session=session, token=token)
    if row is None or row.id is None:
        cache.pop(digest, None)
        raise _unauthorized("invalid, expired or revoked token")
    caller = Caller(row.id, row.name, frozenset(row.scopes.split()))
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[digest] = (now + _CACHE_SECONDS, caller)
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]


async def get_session(request: Request):  # type: ignore[no-untyped-def]
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
