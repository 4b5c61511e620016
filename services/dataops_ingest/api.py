"""The owner's query API (internal: the gateway calls it with the internal token)."""

from __future__ import annotations

from typing import Annotated, Any

from elasticsearch import AsyncElasticsearch
from fastapi import APIRouter, Depends, HTTPException, Query

from libs.telemetry.samples import parse_ts
from services.dataops_ingest import store
from services.dataops_ingest.settings import IngestSettings


def parse_matchers(match: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in match:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HTTPException(422, f"match {item!r}: expected LABEL=VALUE")
        out[key] = value
    return out


def _param_ts(value: str) -> int:
    """A query time: RFC 3339, or epoch milliseconds as digits."""
    return int(value) if value.isdigit() else parse_ts(value, default_ms=0)


def build_router(*, settings: IngestSettings, es: AsyncElasticsearch, guard: Any) -> APIRouter:
    router = APIRouter(prefix="/internal/v1", dependencies=[Depends(guard)])

    @router.get("/metrics/query")
    async def metrics_query(
        name: Annotated[str, Query(min_length=1, max_length=200)],
        start: Annotated[str, Query()],
        end: Annotated[str, Query()],
        match: Annotated[list[str], Query()] = [],
    ) -> dict[str, Any]:
        try:
            start_ms, end_ms = _param_ts(start), _param_ts(end)
        except ValueError as exc:
            raise HTTPException(422, f"start/end: {exc}") from None
        if end_ms < start_ms:
            raise HTTPException(422, "end is before start")
        try:
            series, truncated = await store.query_metrics(
                es,
                prefix=settings.index_prefix,
                name=name,
                matchers=parse_matchers(match),
                start_ms=start_ms,
                end_ms=end_ms,
                max_points=settings.max_query_points,
            )
        except store.StoreUnavailable as exc:
            raise HTTPException(503, f"elasticsearch unavailable: {exc}") from None
        return {"series": series, "truncated": truncated}

    return router
