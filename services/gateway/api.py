"""Public /v1 routes of the gateway (every one needs a bearer token)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from libs.events import topics as t
from libs.events.envelope import (
    EnvelopeError,
    from_binary_http,
    from_structured,
)
from libs.events.publisher import Publisher
from libs.observability.metrics import get_metrics
from libs.telemetry import remote_write
from libs.telemetry.precheck import precheck
from services.gateway import access
from services.gateway import stream as live
from services.gateway.deps import CurrentCaller

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
MAX_BATCH_EVENTS = 10_000
# A remote_write request waits this long for Kafka's acks=all, then gets 503 (retried).
REMOTE_WRITE_KAFKA_TIMEOUT_S = 10.0

router = APIRouter(prefix="/v1")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over the limit without buffering it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise HTTPException(413, f"request body is larger than {limit} bytes")
        except ValueError:
            raise HTTPException(400, "Content-Length is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_events(content_type: str, headers: dict[str, str], body: bytes) -> list[Any]:
    """Each item is a CloudEvent or the EnvelopeError that says why it is not one."""
    if content_type == BATCH:
        items = _json(body)
        if not isinstance(items, list):
            raise HTTPException(400, "a CloudEvents batch must be a JSON array of events")
        if not items:
            raise HTTPException(400, "the batch is empty")
        if len(items) > MAX_BATCH_EVENTS:
            raise HTTPException(413, f"at most {MAX_BATCH_EVENTS} events per batch")
        out: list[Any] = []
        for item in items:
            try:
                out.append(from_structured(item))
            except EnvelopeError as exc:
                out.append(exc)
        return out
    if content_type == STRUCTURED:
        try:
            return [from_structured(_json(body))]
        except EnvelopeError as exc:
            raise HTTPException(400, f"invalid CloudEvent: {exc}") from None
    if any(k.lower() == "ce-specversion" for k in headers):
        try:
            return [from_binary_http(headers, body)]
        except EnvelopeError as exc:
            raise HTTPException(400, f"invalid CloudEvent: {exc}") from None
    raise HTTPException(
        415,
        f"send {STRUCTURED} (one event), {BATCH} (an array), or binary mode "
        "(ce-specversion, ce-id, ce-source, ce-type headers and the data as the body)",
    )


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"malformed JSON: {exc}") from None


@router.post("/events", status_code=202, summary="Publish CloudEvents (structured, batch, binary)")
async def post_events(request: Request, caller: CurrentCaller) -> JSONResponse:
    body = await read_body(request, request.app.state.settings.max_body_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    parsed = _parse_events(content_type, dict(request.headers), body)
    publisher: Publisher = request.app.state.publisher
    accepted: list[str] = []
    rejected: list[dict[str, Any]] = []
    futures = []
    for index, item in enumerate(parsed):
        if isinstance(item, EnvelopeError):
            rejected.append({"index": index, "reason": f"invalid CloudEvent: {item}"})
            continue
        refused = await access.refused_app(request, caller, access.apps_in_event(item))
        if refused is not None:
            reason = f"not allowed to publish for app {refused!r} (maintainer of its team needed)"
            rejected.append({"index": index, "id": item.id, "reason": reason})
            continue
        checked = precheck(item)
        if checked.event is None:
            rejected.append({"index": index, "id": item.id, "reason": "; ".join(checked.errors)})
            continue
        if checked.errors:
            rejected.append(
                {
                    "index": index,
                    "id": item.id,
                    "partial": True,
                    "reason": "; ".join(checked.errors[:100]),
                }
            )
        futures.append(await publisher.send(t.INGEST_RAW, checked.event, key=item.source))
        accepted.append(item.id)
    if futures:
        try:
            await asyncio.gather(*futures)
        except Exception as exc:
            raise HTTPException(503, f"could not hand the events to Kafka: {exc}") from None
    if not accepted:
        return JSONResponse(
            {"detail": "no event accepted", "accepted": [], "rejected": rejected},
            status_code=400 if content_type == BATCH else 422,
        )
    return JSONResponse({"accepted": accepted, "rejected": rejected}, status_code=202)


@router.post(
    "/ingest/prometheus/write",
    status_code=204,
    summary="Prometheus remote_write 1.0 (snappy-compressed protobuf)",
)
async def prometheus_write(request: Request, caller: CurrentCaller) -> Response:
    """204 only once the request is on Kafka (acks=all): Prometheus retries 5xx, drops 4xx."""
    counts = get_metrics()
    try:
        body = await read_body(request, request.app.state.settings.max_body_bytes)
        write = remote_write.decode_request(
            body,
            content_type=request.headers.get("content-type", ""),
            content_encoding=request.headers.get("content-encoding", ""),
            version=request.headers.get("x-prometheus-remote-write-version"),
        )
    except remote_write.RemoteWriteError as exc:
        counts.remote_write_requests.labels("rejected", str(exc.status)).inc()
        raise HTTPException(exc.status, exc.reason) from None
    except HTTPException as exc:
        counts.remote_write_requests.labels("rejected", str(exc.status_code)).inc()
        raise
    apps = {lb.value for ts in write.timeseries for lb in ts.labels if lb.name == "app"}
    refused = await access.refused_app(request, caller, apps - {""})
    if refused is not None:
        counts.remote_write_requests.labels("rejected", "403").inc()
        raise HTTPException(
            403, f"not allowed to write series of app {refused!r} (maintainer of its team needed)"
        )
    samples = remote_write.count_samples(write)
    if write.timeseries:
        event = remote_write.to_event(body, source=f"prometheus/{caller.name}")
        publisher: Publisher = request.app.state.publisher
        try:
            await asyncio.wait_for(
                publisher.publish(t.INGEST_RAW, event, key=event.source),
                REMOTE_WRITE_KAFKA_TIMEOUT_S,
            )
        except Exception as exc:
            counts.remote_write_requests.labels("unavailable", "503").inc()
            counts.remote_write_samples.labels("unavailable").inc(samples)
            reason = str(exc) or type(exc).__name__
            raise HTTPException(503, f"could not hand the samples to Kafka: {reason}") from None
    counts.remote_write_requests.labels("accepted", "204").inc()
    counts.remote_write_samples.labels("accepted").inc(samples)
    return Response(status_code=204)


# GET /v1/metrics/query and the other dataops-ingest queries: services/gateway/dataops.py


@router.get(
    "/events/stream",
    summary="Live events (Server-Sent Events), filtered by type, subject and app; "
    "resumes from Last-Event-ID",
)
async def events_stream(
    request: Request,
    caller: CurrentCaller,
    type: Annotated[
        list[str], Query(description="event type prefix, may repeat (io.opsline.build.)")
    ] = [],
    subject: Annotated[str | None, Query(max_length=500)] = None,
    app: Annotated[str | None, Query(max_length=63, description="only this app's events")] = None,
    last_event_id: Annotated[
        str | None,
        Query(max_length=200, description="resume after this id (or the Last-Event-ID header)"),
    ] = None,
) -> StreamingResponse:
    """Only events of apps the caller may read; platform admins also get app-less ones."""
    hub: live.EventHub = request.app.state.hub
    resume_after = request.headers.get("last-event-id", "")[:200] or last_event_id or ""
    sub, resume = hub.subscribe(tuple(type), subject, resume_after or None)
    return StreamingResponse(
        live.stream(
            hub,
            sub,
            allowed=access.event_filter(request, caller, app),
            resume=resume,
            last_event_id=resume_after,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
