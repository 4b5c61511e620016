"""/v1 routes dataops-ingest answers: scrape targets, metric queries, series, log search
and app timelines, forwarded to its internal API with the internal token.

Status codes pass through, except that a dataops-ingest 503 (Elasticsearch or its
database down) stays 503 and any other 5xx becomes 502.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response

from services.gateway import access
from services.gateway.api import read_body
from services.gateway.deps import CurrentCaller

router = APIRouter(prefix="/v1")
PEER = "dataops-ingest"

TargetId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]
AppName = Annotated[str, Path(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
Matches = Annotated[
    list[str] | None,
    Query(description="LABEL=VALUE, LABEL!=VALUE, LABEL=~REGEX, LABEL!~REGEX; may repeat"),
]
Time = Annotated[str | None, Query(description="RFC 3339 or epoch milliseconds")]


async def to_dataops(request: Request, path: str) -> Response:
    """Hand the request to dataops-ingest's /internal/v1 API and its answer back."""
    state = request.app.state
    base = state.settings.peer_urls().get(PEER)
    if not base:
        raise HTTPException(503, f"no {PEER} peer configured (OPSLINE_GATEWAY_PEERS)")
    content = None
    if request.method in ("POST", "PUT", "PATCH"):
        content = await read_body(request, state.settings.max_body_bytes)
    headers = dict(state.internal_headers)
    if content is not None:
        headers["content-type"] = request.headers.get("content-type", "application/json")
    if "traceparent" in request.headers:
        headers["traceparent"] = request.headers["traceparent"]
    client: httpx.AsyncClient = state.http
    try:
        upstream = await client.request(
            request.method,
            f"{base}/internal/v1{path}",
            params=list(request.query_params.multi_items()),
            content=content,
            headers=headers,
        )
    except httpx.HTTPError as exc:
        raise HTTPException(503, f"{PEER} unreachable: {exc}") from None
    if upstream.status_code == 503:
        raise HTTPException(503, f"{PEER}: {_detail(upstream)}")
    if upstream.status_code >= 500:
        raise HTTPException(502, f"{PEER} failed: {_detail(upstream)}")
    return Response(
        await access.shape(request, upstream.status_code, upstream.content),
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type"),
    )


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text[:500])
    except ValueError:
        return response.text[:500]


# ------------------------------------------------------------------ scrape targets

targets = APIRouter(prefix="/scrape/targets", tags=["scrape targets"])


@targets.post("", status_code=201, summary="Register a Prometheus exporter to scrape")
async def create_target(
    request: Request, caller: CurrentCaller, body: Annotated[dict[str, Any], Body()]
) -> Response:
    return await to_dataops(request, "/scrape/targets")


@targets.get("", summary="Scrape targets with their health (filters: job, app, source, health)")
async def list_targets(
    request: Request,
    caller: CurrentCaller,
    job: str | None = None,
    app: str | None = None,
    source: Annotated[str | None, Query(description="api or kubernetes")] = None,
    health: Annotated[str | None, Query(description="up, down or unknown")] = None,
) -> Response:
    return await to_dataops(request, "/scrape/targets")


@targets.get("/{target_id}", summary="A scrape target: last_scrape, last_error, health")
async def get_target(request: Request, caller: CurrentCaller, target_id: TargetId) -> Response:
    return await to_dataops(request, f"/scrape/targets/{target_id}")


@targets.patch("/{target_id}", summary="Change a scrape target (the fields given)")
async def update_target(
    request: Request,
    caller: CurrentCaller,
    target_id: TargetId,
    body: Annotated[dict[str, Any], Body()],
) -> Response:
    return await to_dataops(request, f"/scrape/targets/{target_id}")


@targets.delete("/{target_id}", status_code=204, summary="Stop scraping a target")
async def delete_target(request: Request, caller: CurrentCaller, target_id: TargetId) -> Response:
    return await to_dataops(request, f"/scrape/targets/{target_id}")


router.include_router(targets)

# ------------------------------------------------------------------ queries


@router.get(
    "/metrics/query",
    tags=["queries"],
    summary="Metric samples by name, label matchers and time range; with step and agg, "
    "one aggregated point per series and step",
)
async def metrics_query(
    request: Request,
    caller: CurrentCaller,
    name: Annotated[str, Query(min_length=1, max_length=200, description="metric name")],
    start: Annotated[str, Query(description="RFC 3339 or epoch milliseconds")],
    end: Annotated[str, Query(description="RFC 3339 or epoch milliseconds")],
    match: Matches = None,
    step: Annotated[str | None, Query(description="30s, 5m, 1h (default 60s with agg)")] = None,
    agg: Annotated[str | None, Query(description="avg, min, max, sum, count or rate")] = None,
) -> Response:
    return await to_dataops(request, "/metrics/query")


@router.get("/metrics/series", tags=["queries"], summary="The series matching the matchers")
async def metrics_series(
    request: Request,
    caller: CurrentCaller,
    match: Matches = None,
    name: str | None = None,
    start: Time = None,
    end: Time = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> Response:
    return await to_dataops(request, "/metrics/series")


@router.get("/logs/search", tags=["queries"], summary="Log records, newest first")
async def logs_search(
    request: Request,
    caller: CurrentCaller,
    q: Annotated[str | None, Query(description="Lucene query over message and fields")] = None,
    match: Matches = None,
    level: str | None = None,
    start: Time = None,
    end: Time = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    return await to_dataops(request, "/logs/search")


@router.get(
    "/apps/{app}/timeline",
    tags=["queries"],
    summary="An app's builds, deploys, changes and alerts, newest first",
)
async def app_timeline(
    request: Request,
    caller: CurrentCaller,
    app: AppName,
    kind: Annotated[list[str] | None, Query(description="build, deploy, app, alert, ops")] = None,
    start: Time = None,
    end: Time = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    return await to_dataops(request, f"/apps/{app}/timeline")
