"""The owner's API (internal: the gateway calls it with the internal token): scrape
targets, metric queries, series, log search and app timelines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

from elasticsearch import AsyncElasticsearch
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.telemetry.samples import parse_ts
from services.dataops_ingest import queries, store, targets
from services.dataops_ingest.models import (
    ScrapeTargetCreate,
    ScrapeTargetPublic,
    ScrapeTargetUpdate,
)
from services.dataops_ingest.settings import IngestSettings

T = TypeVar("T")
TargetId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]
AppName = Annotated[str, Path(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
Matches = Annotated[list[str], Query(description="LABEL=VALUE, !=, =~ or !~; may repeat")]
Offset = Annotated[int, Query(ge=0)]


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(_session)]


def parse_matchers(match: list[str]) -> list[queries.Matcher]:
    try:
        return queries.parse_matchers(match)
    except queries.QueryError as exc:
        raise HTTPException(422, str(exc)) from None


def _param_ts(value: str) -> int:
    """A query time: RFC 3339, or epoch milliseconds as digits."""
    return int(value) if value.isdigit() else parse_ts(value, default_ms=0)


def time_range(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    try:
        start_ms = _param_ts(start) if start else None
        end_ms = _param_ts(end) if end else None
    except ValueError as exc:
        raise HTTPException(422, f"start/end: {exc}") from None
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise HTTPException(422, "end is before start")
    return start_ms, end_ms


async def answer(query: Awaitable[T]) -> T:
    """Run a store query: 422 when the store refuses it, 503 when the store is down."""
    try:
        return await query
    except queries.QueryError as exc:
        raise HTTPException(422, str(exc)) from None
    except store.StoreUnavailable as exc:
        raise HTTPException(503, f"elasticsearch unavailable: {exc}") from None


def build_router(
    *,
    settings: IngestSettings,
    es: AsyncElasticsearch,
    guard: Any,
) -> APIRouter:
    router = APIRouter(prefix="/internal/v1", dependencies=[Depends(guard)])
    router.include_router(_target_routes())
    prefix = settings.index_prefix

    @router.get("/metrics/query")
    async def metrics_query(
        name: Annotated[str, Query(min_length=1, max_length=200)],
        start: Annotated[str, Query()],
        end: Annotated[str, Query()],
        match: Matches = [],
        step: Annotated[str | None, Query(description="30s, 5m, 1h: one point per step")] = None,
        agg: Annotated[str | None, Query(description="avg, min, max, sum, count, rate")] = None,
    ) -> dict[str, Any]:
        start_ms, end_ms = time_range(start, end)
        if start_ms is None or end_ms is None:
            raise HTTPException(422, "start and end are required (RFC 3339 or epoch milliseconds)")
        matchers = parse_matchers(match)
        if step is None and agg is None:
            series, truncated = await answer(
                store.query_metrics(
                    es,
                    prefix=prefix,
                    name=name,
                    matchers=matchers,
                    start_ms=start_ms,
                    end_ms=end_ms,
                    max_points=settings.max_query_points,
                )
            )
            return {"series": series, "truncated": truncated}
        try:
            step_ms = queries.parse_step(step or "60s")
        except queries.QueryError as exc:
            raise HTTPException(422, str(exc)) from None
        series, truncated = await answer(
            queries.metric_range(
                es,
                prefix=prefix,
                name=name,
                matchers=matchers,
                start_ms=start_ms,
                end_ms=end_ms,
                step_ms=step_ms,
                agg=agg or "avg",
            )
        )
        return {
            "series": series,
            "truncated": truncated,
            "step": step_ms / 1000,
            "agg": agg or "avg",
        }

    @router.get("/metrics/series")
    async def metrics_series(
        match: Matches = [],
        name: Annotated[str | None, Query(max_length=200)] = None,
        start: str | None = None,
        end: str | None = None,
        limit: Annotated[int, Query(ge=1, le=queries.MAX_SERIES)] = 500,
    ) -> dict[str, Any]:
        start_ms, end_ms = time_range(start, end)
        matchers = parse_matchers(match)
        if name is None and not matchers:
            raise HTTPException(422, "give a name or at least one match")
        found, truncated = await answer(
            queries.series(
                es,
                prefix=prefix,
                name=name,
                matchers=matchers,
                start_ms=start_ms,
                end_ms=end_ms,
                limit=limit,
            )
        )
        return {"series": found, "truncated": truncated}

    @router.get("/logs/search")
    async def logs_search(
        q: Annotated[str | None, Query(max_length=2000, description="Lucene query")] = None,
        match: Matches = [],
        level: Annotated[str | None, Query(max_length=20)] = None,
        start: str | None = None,
        end: str | None = None,
        offset: Offset = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        start_ms, end_ms = time_range(start, end)
        return await answer(
            queries.search_logs(
                es,
                prefix=prefix,
                query=q,
                matchers=parse_matchers(match),
                level=level,
                start_ms=start_ms,
                end_ms=end_ms,
                offset=offset,
                limit=limit,
            )
        )

    @router.get("/apps/{app}/timeline")
    async def app_timeline(
        app: AppName,
        kind: Annotated[list[str], Query(description="build, deploy, app, alert, ops")] = [],
        start: str | None = None,
        end: str | None = None,
        offset: Offset = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        unknown = set(kind) - {"build", "deploy", "app", "alert", "ops"}
        if unknown:
            raise HTTPException(422, f"kind: unknown {sorted(unknown)}")
        start_ms, end_ms = time_range(start, end)
        return await answer(
            queries.timeline(
                es,
                prefix=prefix,
                app=app,
                kinds=kind,
                start_ms=start_ms,
                end_ms=end_ms,
                offset=offset,
                limit=limit,
            )
        )

    return router


def _target_routes() -> APIRouter:
    router = APIRouter(prefix="/scrape/targets")

    async def found(s: AsyncSession, target_id: str) -> Any:
        row = await targets.get(s, target_id=target_id)
        if row is None:
            raise HTTPException(404, f"no scrape target {target_id}")
        return row

    async def changing(call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except targets.NotFound as exc:
            raise HTTPException(404, f"no scrape target {exc}") from None
        except targets.Conflict as exc:
            raise HTTPException(409, str(exc)) from None
        except targets.Invalid as exc:
            raise HTTPException(422, str(exc)) from None

    @router.post("", status_code=201)
    async def create(
        s: SessionDep, body: Annotated[ScrapeTargetCreate, Body()]
    ) -> ScrapeTargetPublic:
        row = await changing(lambda: targets.create(s, spec=body))
        return targets.public(row)

    @router.get("")
    async def list_targets(
        s: SessionDep,
        job: str | None = None,
        app: str | None = None,
        source: str | None = None,
        health: str | None = None,
        offset: Offset = 0,
        limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    ) -> dict[str, Any]:
        rows = await targets.get_all(s, job=job, app=app, source=source)
        if health is not None:
            rows = [r for r in rows if r.health == health]
        page = rows[offset : offset + limit]
        return {"targets": [targets.public(r) for r in page], "total": len(rows)}

    @router.get("/{target_id}")
    async def get_target(s: SessionDep, target_id: TargetId) -> ScrapeTargetPublic:
        return targets.public(await found(s, target_id))

    @router.patch("/{target_id}")
    async def update_target(
        s: SessionDep, target_id: TargetId, body: Annotated[ScrapeTargetUpdate, Body()]
    ) -> ScrapeTargetPublic:
        row = await changing(lambda: targets.update(s, target_id=target_id, changes=body))
        return targets.public(row)

    @router.delete("/{target_id}", status_code=204)
    async def delete_target(s: SessionDep, target_id: TargetId) -> Response:
        await changing(lambda: targets.delete(s, target_id=target_id))
        return Response(status_code=204)

    return router
