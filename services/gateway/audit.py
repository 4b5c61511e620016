"""The audit log: every mutating /v1 request recorded (who, what, when, outcome) and
queryable at GET /v1/audit.

A record has the method, the path (never the query string, which could carry a secret),
the route, the caller, the team and app the policy found, the status and outcome, the
duration and the request id. Never a body, never a header value but X-Request-ID. For
refusals the gateway itself makes (401, 403, 413, 429) the reason is kept too.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from sqlmodel import col, delete, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.deps import CurrentCaller, SessionDep
from services.gateway.models import AuditRecord, aware

log = logging.getLogger(__name__)
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
_REASON_KEPT = frozenset({401, 403, 413, 429})
_REASON_MAX = 500


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403, 429):
        return "denied"
    return "rejected" if status < 500 else "failed"


class AuditMiddleware:
    """Records each mutating /v1 request once it has been answered."""

    def __init__(self, app: ASGIApp, *, sessions: Callable[[], Any]) -> None:
        self.app = app
        self.sessions = sessions  # called per request: the app's state is set after start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        audited = scope["method"] in MUTATING and scope["path"].startswith("/v1/")
        state: dict[str, Any] = scope.setdefault("state", {})
        seen: dict[str, Any] = {"status": 500, "reason": b""}
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"x-request-id", request_id.encode()),
                    ],
                }
            elif message["type"] == "http.response.body" and seen["status"] in _REASON_KEPT:
                seen["reason"] += message.get("body", b"")[:_REASON_MAX]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if audited:
                await self._record(scope, state, request_id, seen, time.perf_counter() - started)

    async def _record(
        self,
        scope: Scope,
        state: dict[str, Any],
        request_id: str,
        seen: dict[str, Any],
        elapsed: float,
    ) -> None:
        caller = state.get("caller")
        grant = state.get("grant")
        route = scope.get("route")
        client = scope.get("client")
        status = int(seen["status"])
        record = AuditRecord(
            request_id=request_id,
            user=getattr(caller, "user", "") or "",
            token_id=getattr(caller, "token_id", None),
            method=scope["method"],
            path=scope["path"][:2000],
            route=str(state.get("route") or getattr(route, "path", ""))[:300],
            team=getattr(grant, "team", "") or "",
            app=getattr(grant, "app", "") or "",
            status=status,
            outcome="denied" if state.get("refused") else outcome_of(status),
            reason=_reason(seen["reason"]) if status in _REASON_KEPT else "",
            duration_ms=round(elapsed * 1000, 3),
            client=(client[0] if client else "")[:100],
        )
        try:
            async with self.sessions()() as session:
                session.add(record)
                await session.commit()
        except Exception as exc:  # the answer is already out; say so loudly, do not crash
            log.error("audit record for %s %s not written: %s", record.method, record.path, exc)


def _reason(body: bytes) -> str:
    try:
        detail = orjson.loads(body).get("detail", "")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return str(detail)[:_REASON_MAX]


async def prune(sessions: Any, *, days: int) -> int:
    """Delete records older than the retention; how many went."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    async with sessions() as session:
        result = await session.exec(delete(AuditRecord).where(col(AuditRecord.ts) < cutoff))  # type: ignore[call-overload]
        await session.commit()
    return int(result.rowcount or 0)


# ------------------------------------------------------------------ queries

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get(
    "/audit",
    summary="Mutating requests, newest first (platform admins: all; team admins: their teams')",
)
async def list_audit(
    session: SessionDep,
    caller: CurrentCaller,
    user: Annotated[str | None, Query(max_length=100)] = None,
    team: Annotated[str | None, Query(max_length=63)] = None,
    app: Annotated[str | None, Query(max_length=63)] = None,
    outcome: Annotated[str | None, Query(pattern="^(ok|denied|rejected|failed)$")] = None,
    method: Annotated[str | None, Query(pattern="^(POST|PUT|PATCH|DELETE)$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**62, description="page: ids below this")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    query = select(AuditRecord)
    if not caller.platform_admin:
        mine = [t for t, role in caller.roles.items() if role == "admin"]
        query = query.where(col(AuditRecord.team).in_(mine))
    for column, value in (
        (AuditRecord.user, user),
        (AuditRecord.team, team),
        (AuditRecord.app, app),
        (AuditRecord.outcome, outcome),
        (AuditRecord.method, method),
    ):
        if value is not None:
            query = query.where(col(column) == value)
    if since is not None:
        query = query.where(col(AuditRecord.ts) >= aware(since))
    if until is not None:
        query = query.where(col(AuditRecord.ts) < aware(until))
    if before_id is not None:
        query = query.where(col(AuditRecord.id) < before_id)
    rows = (await session.exec(query.order_by(col(AuditRecord.id).desc()).limit(limit))).all()
    return {"records": [r.model_dump() for r in rows]}
