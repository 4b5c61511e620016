"""/v1 routes aiops-detector answers: alerts, alert rules, silences, incidents, app health,
series analysis and notification receivers, forwarded to its internal API."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Path, Query, Request, Response

from services.gateway.catalog import forward
from services.gateway.deps import CurrentCaller

router = APIRouter(prefix="/v1", tags=["alerts"])
PEER = "aiops-detector"

Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
AppName = Annotated[str, Path(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
JsonBody = Annotated[dict[str, Any], Body()]


async def to_detector(request: Request, path: str) -> Response:
    return await forward(request, PEER, path)


@router.get("/alerts", summary="Alerts, newest first (state=firing|resolved, app, severity)")
async def list_alerts(
    request: Request,
    caller: CurrentCaller,
    state: Annotated[str | None, Query(pattern="^(firing|resolved)$")] = None,
    app: str | None = None,
    severity: Annotated[str | None, Query(pattern="^(WARNING|CRITICAL)$")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> Response:
    return await to_detector(request, "/alerts")


@router.get("/alerts/{fingerprint}", summary="One alert, with the silences muting it")
async def get_alert(request: Request, caller: CurrentCaller, fingerprint: Id) -> Response:
    return await to_detector(request, f"/alerts/{fingerprint}")


@router.get("/alert-rules", summary="Static alert rules")
async def list_rules(request: Request, caller: CurrentCaller) -> Response:
    return await to_detector(request, "/alert-rules")


@router.post(
    "/alert-rules",
    status_code=201,
    summary="Create a rule: metric, matchers, comparator, thresholds per level, for_s, occurrences",
)
async def create_rule(request: Request, caller: CurrentCaller, body: JsonBody) -> Response:
    return await to_detector(request, "/alert-rules")


@router.get("/alert-rules/{rule_id}", summary="One alert rule")
async def get_rule(request: Request, caller: CurrentCaller, rule_id: Id) -> Response:
    return await to_detector(request, f"/alert-rules/{rule_id}")


@router.put("/alert-rules/{rule_id}", summary="Replace an alert rule (or create it by id)")
async def put_rule(
    request: Request, caller: CurrentCaller, rule_id: Id, body: JsonBody
) -> Response:
    return await to_detector(request, f"/alert-rules/{rule_id}")


@router.delete(
    "/alert-rules/{rule_id}", status_code=204, summary="Delete a rule (resolves its alerts)"
)
async def delete_rule(request: Request, caller: CurrentCaller, rule_id: Id) -> Response:
    return await to_detector(request, f"/alert-rules/{rule_id}")


@router.get("/silences", summary="Silences (pending, active and expired)")
async def list_silences(request: Request, caller: CurrentCaller) -> Response:
    return await to_detector(request, "/silences")


@router.post("/silences", status_code=201, summary="Mute notifications of matching alerts")
async def create_silence(request: Request, caller: CurrentCaller, body: JsonBody) -> Response:
    return await to_detector_as(request, caller, "/silences")


@router.get("/silences/{silence_id}", summary="One silence")
async def get_silence(request: Request, caller: CurrentCaller, silence_id: Id) -> Response:
    return await to_detector(request, f"/silences/{silence_id}")


@router.put("/silences/{silence_id}", summary="Change a silence")
async def put_silence(
    request: Request, caller: CurrentCaller, silence_id: Id, body: JsonBody
) -> Response:
    return await to_detector_as(request, caller, f"/silences/{silence_id}")


@router.delete("/silences/{silence_id}", status_code=204, summary="Expire a silence now")
async def expire_silence(request: Request, caller: CurrentCaller, silence_id: Id) -> Response:
    return await to_detector(request, f"/silences/{silence_id}")


async def to_detector_as(request: Request, caller: Any, path: str) -> Response:
    """Forward with the caller's name as a query parameter the detector trusts (internal)."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "created_by"]
    who = caller.user or caller.name
    request.scope["query_string"] = urlencode([*query, ("created_by", who)]).encode()
    request.__dict__.pop("_query_params", None)
    return await to_detector(request, path)


@router.get("/incidents", summary="Incidents: repeated alerts of one rule on one app")
async def list_incidents(
    request: Request,
    caller: CurrentCaller,
    state: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
    app: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> Response:
    return await to_detector(request, "/incidents")


@router.get("/incidents/{incident_id}", summary="One incident, its alerts and its deployment")
async def get_incident(request: Request, caller: CurrentCaller, incident_id: Id) -> Response:
    return await to_detector(request, f"/incidents/{incident_id}")


@router.get("/apps/{app}/health", summary="An app's health score (0-100) from its open alerts")
async def app_health(request: Request, caller: CurrentCaller, app: AppName) -> Response:
    return await to_detector(request, f"/apps/{app}/health")


@router.post(
    "/aiops/analyze",
    summary="Score a series: {series: [[ts, value], …], detector?, params?, threshold?}",
)
async def analyze(request: Request, caller: CurrentCaller) -> Response:
    return await to_detector(request, "/aiops/analyze")


@router.get("/notifications/receivers", summary="Notification receivers (secrets not shown)")
async def list_receivers(request: Request, caller: CurrentCaller) -> Response:
    return await to_detector(request, "/notifications/receivers")


@router.post(
    "/notifications/receivers",
    status_code=201,
    summary="Add a webhook or Alertmanager receiver",
)
async def create_receiver(request: Request, caller: CurrentCaller, body: JsonBody) -> Response:
    return await to_detector(request, "/notifications/receivers")


@router.get("/notifications/receivers/{receiver_id}", summary="One receiver")
async def get_receiver(request: Request, caller: CurrentCaller, receiver_id: Id) -> Response:
    return await to_detector(request, f"/notifications/receivers/{receiver_id}")


@router.put("/notifications/receivers/{receiver_id}", summary="Replace a receiver")
async def put_receiver(
    request: Request, caller: CurrentCaller, receiver_id: Id, body: JsonBody
) -> Response:
    return await to_detector(request, f"/notifications/receivers/{receiver_id}")


@router.delete(
    "/notifications/receivers/{receiver_id}", status_code=204, summary="Delete a receiver"
)
async def delete_receiver(request: Request, caller: CurrentCaller, receiver_id: Id) -> Response:
    return await to_detector(request, f"/notifications/receivers/{receiver_id}")
