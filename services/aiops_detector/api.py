"""aiops-detector's internal API (the gateway forwards /v1/alerts, /v1/alert-rules,
/v1/silences, /v1/incidents, /v1/apps/{app}/health, /v1/aiops/analyze and
/v1/notifications/receivers here)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from services.aiops_detector import analyze as analysis
from services.aiops_detector import notify, service
from services.aiops_detector.models import Alert, Receiver, Silence
from services.aiops_detector.rules import RuleSpec
from services.aiops_detector.settings import DetectorSettings

Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
AppName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")]


@dataclass(frozen=True)
class StreamView:
    """What this worker's stream holds (each worker answers for its own partitions)."""

    worker: Callable[[], dict[str, Any]]
    series: Callable[[str], dict[str, Any] | None]


def build_router(
    *,
    guard: Any,
    settings: DetectorSettings,
    on_rules_changed: Callable[[], Awaitable[None]],
    stream: StreamView | None = None,
) -> APIRouter:
    router = APIRouter(prefix="/internal/v1", dependencies=[Depends(guard)])

    if stream is not None:

        @router.get("/aiops/worker")
        async def worker() -> dict[str, Any]:
            """The aiops.series partitions this worker owns and the series it holds."""
            return stream.worker()

        @router.get("/aiops/series/{series_id}")
        async def series_state(series_id: Annotated[str, Path(pattern="^[0-9a-f]{16}$")]) -> Any:
            found = stream.series(series_id)
            if found is None:
                raise HTTPException(404, f"series {series_id} is not held by this worker")
            return found

    def _sessions(request: Request) -> Any:
        return request.app.state.sessions

    def _wake(request: Request) -> None:
        request.app.state.relay.wake()

    # --- alerts ----------------------------------------------------------------

    @router.get("/alerts")
    async def list_alerts(
        request: Request,
        state: Annotated[str | None, Query(pattern="^(firing|resolved)$")] = None,
        app: Annotated[str | None, Query(max_length=200)] = None,
        severity: Annotated[str | None, Query(pattern="^(WARNING|CRITICAL)$")] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> dict[str, Any]:
        async with _sessions(request)() as session:
            alerts = await service.list_alerts(
                session=session,
                now_ms=notify.now_ms(),
                state=state,
                app=app,
                severity=severity,
                limit=limit,
            )
        return {"alerts": alerts}

    @router.get("/alerts/{fingerprint}")
    async def get_alert(request: Request, fingerprint: Id) -> dict[str, Any]:
        async with _sessions(request)() as session:
            alert = await session.get(Alert, fingerprint)
            if alert is None:
                raise HTTPException(404, f"no alert {fingerprint}")
            silences = await notify.active_silences(session, notify.now_ms())
        return service.alert_view(alert, silences, notify.now_ms())

    # --- rules -------------------------------------------------------------------

    @router.get("/alert-rules")
    async def list_rules(request: Request) -> dict[str, Any]:
        async with _sessions(request)() as session:
            rules = await service.list_rules(session=session)
        return {"rules": [r.model_dump(mode="json") for r in rules]}

    @router.post("/alert-rules", status_code=201)
    async def create_rule(request: Request, spec: RuleSpec) -> dict[str, Any]:
        return await _save_rule(request, spec, None)

    @router.get("/alert-rules/{rule_id}")
    async def get_rule(request: Request, rule_id: Id) -> dict[str, Any]:
        async with _sessions(request)() as session:
            rules = [r for r in await service.list_rules(session=session) if r.id == rule_id]
        if not rules:
            raise HTTPException(404, f"no alert rule {rule_id}")
        return rules[0].model_dump(mode="json")

    @router.put("/alert-rules/{rule_id}")
    async def put_rule(request: Request, rule_id: Id, spec: RuleSpec) -> dict[str, Any]:
        return await _save_rule(request, spec, rule_id)

    async def _save_rule(request: Request, spec: RuleSpec, rule_id: str | None) -> dict[str, Any]:
        async with _sessions(request)() as session, session.begin():
            rule, _ = await service.save_rule(
                session=session, spec=spec, rule_id=rule_id, now_ms=notify.now_ms()
            )
        _wake(request)
        await on_rules_changed()
        return rule.model_dump(mode="json")

    @router.delete("/alert-rules/{rule_id}", status_code=204)
    async def delete_rule(request: Request, rule_id: Id) -> Response:
        async with _sessions(request)() as session, session.begin():
            found = await service.delete_rule(
                session=session, rule_id=rule_id, now_ms=notify.now_ms()
            )
        if not found:
            raise HTTPException(404, f"no alert rule {rule_id}")
        _wake(request)
        await on_rules_changed()
        return Response(status_code=204)

    # --- silences ----------------------------------------------------------------

    @router.get("/silences")
    async def list_silences(request: Request) -> dict[str, Any]:
        now = notify.now_ms()
        async with _sessions(request)() as session:
            rows = await session.exec(select(Silence).order_by(col(Silence.ends_at).desc()))
            return {"silences": [service.silence_json(s, now) for s in rows]}

    @router.post("/silences", status_code=201)
    async def create_silence(request: Request, spec: service.SilenceSpec) -> dict[str, Any]:
        return await _save_silence(request, spec, None)

    @router.put("/silences/{silence_id}")
    async def put_silence(
        request: Request, silence_id: Id, spec: service.SilenceSpec
    ) -> dict[str, Any]:
        return await _save_silence(request, spec, silence_id)

    async def _save_silence(
        request: Request, spec: service.SilenceSpec, silence_id: str | None
    ) -> dict[str, Any]:
        now = notify.now_ms()
        try:
            async with _sessions(request)() as session, session.begin():
                old = await session.get(Silence, silence_id) if silence_id else None
                if old is not None:
                    await notify.unmute(session, old_end=old.ends_at, at_ms=now)
                row = await service.save_silence(
                    session=session,
                    spec=spec,
                    silence_id=silence_id,
                    by=request.query_params.get("created_by", "")[:200],
                    now_ms=now,
                )
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return service.silence_json(row, now)

    @router.get("/silences/{silence_id}")
    async def get_silence(request: Request, silence_id: Id) -> dict[str, Any]:
        async with _sessions(request)() as session:
            row = await session.get(Silence, silence_id)
        if row is None:
            raise HTTPException(404, f"no silence {silence_id}")
        return service.silence_json(row, notify.now_ms())

    @router.delete("/silences/{silence_id}", status_code=204)
    async def expire_silence(request: Request, silence_id: Id) -> Response:
        """Expire it now (kept, as Alertmanager does, so the history shows it)."""
        now = notify.now_ms()
        async with _sessions(request)() as session, session.begin():
            row = await session.get(Silence, silence_id)
            if row is None:
                raise HTTPException(404, f"no silence {silence_id}")
            old_end = row.ends_at
            row.ends_at = min(row.ends_at, now)
            row.starts_at = min(row.starts_at, now)
            session.add(row)
            await notify.unmute(session, old_end=old_end, at_ms=now)
        return Response(status_code=204)

    # --- incidents and health ----------------------------------------------------

    @router.get("/incidents")
    async def list_incidents(
        request: Request,
        state: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
        app: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 200,
    ) -> dict[str, Any]:
        async with _sessions(request)() as session:
            incidents = await service.list_incidents(
                session=session, state=state, app=app, limit=limit
            )
        return {"incidents": incidents}

    @router.get("/incidents/{incident_id}")
    async def get_incident(request: Request, incident_id: Id) -> dict[str, Any]:
        async with _sessions(request)() as session:
            found = await service.get_incident(session=session, incident_id=incident_id)
        if found is None:
            raise HTTPException(404, f"no incident {incident_id}")
        return found

    @router.get("/apps/{app}/health")
    async def app_health(request: Request, app: AppName) -> dict[str, Any]:
        async with _sessions(request)() as session:
            return await service.app_health(session=session, app=app)

    # --- analyze ---------------------------------------------------------------------

    @router.post("/aiops/analyze")
    async def analyze(body: analysis.AnalyzeRequest) -> dict[str, Any]:
        try:
            points = analysis.parse_points(body.series, max_points=settings.analyze_max_points)
            detector = analysis.make_detector(body.detector or settings.detector, body.params)
        except analysis.AnalyzeError as exc:
            raise HTTPException(422, str(exc)) from None
        threshold = body.threshold or settings.anomaly_threshold
        # CPU-bound: off the loop, so the stream and other requests keep going
        return await asyncio.to_thread(
            functools.partial(
                analysis.analyze,
                points,
                detector,
                threshold=threshold,
                band_sigma=body.band_sigma,
                band_alpha=body.band_alpha,
            )
        )

    # --- receivers ---------------------------------------------------------------

    @router.get("/notifications/receivers")
    async def list_receivers(request: Request) -> dict[str, Any]:
        async with _sessions(request)() as session:
            rows = await session.exec(select(Receiver).order_by(col(Receiver.name)))
            return {"receivers": [service.receiver_json(r) for r in rows]}

    @router.post("/notifications/receivers", status_code=201)
    async def create_receiver(request: Request, spec: service.ReceiverSpec) -> dict[str, Any]:
        return await _save_receiver(request, spec, None)

    @router.put("/notifications/receivers/{receiver_id}")
    async def put_receiver(
        request: Request, receiver_id: Id, spec: service.ReceiverSpec
    ) -> dict[str, Any]:
        return await _save_receiver(request, spec, receiver_id)

    async def _save_receiver(
        request: Request, spec: service.ReceiverSpec, receiver_id: str | None
    ) -> dict[str, Any]:
        try:
            async with _sessions(request)() as session, session.begin():
                row = await service.save_receiver(
                    session=session, spec=spec, receiver_id=receiver_id, now_ms=notify.now_ms()
                )
        except IntegrityError:
            raise HTTPException(409, f"a receiver named {spec.name!r} exists") from None
        return service.receiver_json(row)

    @router.get("/notifications/receivers/{receiver_id}")
    async def get_receiver(request: Request, receiver_id: Id) -> dict[str, Any]:
        async with _sessions(request)() as session:
            row = await session.get(Receiver, receiver_id)
        if row is None:
            raise HTTPException(404, f"no receiver {receiver_id}")
        return service.receiver_json(row)

    @router.delete("/notifications/receivers/{receiver_id}", status_code=204)
    async def delete_receiver(request: Request, receiver_id: Id) -> Response:
        async with _sessions(request)() as session, session.begin():
            row = await session.get(Receiver, receiver_id)
            if row is None:
                raise HTTPException(404, f"no receiver {receiver_id}")
            await session.delete(row)
        return Response(status_code=204)

    return router
