"""Alert lifecycle: signals from the stream become alerts (raised → updated → resolved),
alerts of one rule on one app aggregate into an incident, and an incident that starts
soon after a deploy of its app is linked to that deployment (a change-induced incident).

Every change is announced on `alert.events` through the outbox, in the same transaction.
Signals arrive at least once and possibly late: a signal no newer than what the alert
already reflects changes nothing, so redelivery is harmless.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events import topics as t
from libs.events.envelope import CloudEvent
from libs.events.outbox import add_to_outbox
from libs.observability.metrics import get_metrics
from services.aiops_detector.models import Alert, Deployment, Incident, dumps, loads
from services.aiops_detector.rules import RANK, Level

SOURCE = "opsline/aiops-detector"


@dataclass(frozen=True, slots=True)
class Timing:
    correlation_window_ms: int = 1_800_000
    incident_close_after_ms: int = 3_600_000


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "state": alert.state,
        "severity": alert.severity,
        "rule_id": alert.rule_id,
        "rule_name": alert.rule_name,
        "app": alert.app,
        "labels": loads(alert.labels),
        "summary": alert.summary,
        "value": alert.value,
        "score": alert.score,
        "starts_at": alert.starts_at,
        "updated_at": alert.updated_at,
        "ends_at": alert.ends_at,
        "incident_id": alert.incident_id,
    }


def incident_json(incident: Incident) -> dict[str, Any]:
    recovery = (
        incident.recovered_at - incident.first_seen if incident.recovered_at is not None else None
    )
    return {
        "id": incident.id,
        "rule_id": incident.rule_id,
        "rule_name": incident.rule_name,
        "app": incident.app,
        "state": incident.state,
        "severity": incident.severity,
        "occurrences": incident.occurrences,
        "first_seen": incident.first_seen,
        "last_seen": incident.last_seen,
        "firing": incident.firing,
        "recovered_at": incident.recovered_at,
        "recovery_ms": recovery,
        "closed_at": incident.closed_at,
        "change_induced": incident.deployment_id is not None,
        "deployment": {"deployment_id": incident.deployment_id, **loads(incident.deployment)}
        if incident.deployment_id
        else None,
    }


def _announce(session: AsyncSession, what: str, data: dict[str, Any], key: str) -> None:
    get_metrics().alert_changes.labels(what).inc()
    add_to_outbox(
        session,
        topic=t.ALERT_EVENTS,
        key=key,
        event=CloudEvent.create(type=f"io.opsline.{what}", source=SOURCE, subject=key, data=data),
    )


async def apply_signal(
    session: AsyncSession, signal: dict[str, Any], *, now_ms: int, timing: Timing
) -> Alert | None:
    """Fold one signal into its alert; the alert if it changed (for notifications)."""
    fp = signal["fingerprint"]
    ts = int(signal["ts_ms"])
    firing = signal["state"] == "firing"
    alert = await session.get(Alert, fp)
    if alert is not None and ts <= alert.last_ts:
        return None  # redelivered or out of order
    if alert is None:
        if not firing:
            return None  # resolved before we ever saw it fire
        labels = signal["labels"]
        alert = Alert(
            fingerprint=fp,
            rule_id=signal["rule_id"],
            rule_name=signal["rule_name"],
            app=labels.get("app", ""),
            state="resolved",
            severity=signal["severity"],
            labels=dumps(labels),
            starts_at=ts,
            updated_at=now_ms,
            last_ts=ts,
        )
    was_firing = alert.state == "firing"
    alert.last_ts = ts
    alert.value = float(signal["value"])
    alert.score = float(signal.get("score") or 0.0)
    alert.summary = str(signal.get("summary") or "")[:1000]
    alert.updated_at = now_ms
    if firing and not was_firing:
        alert.state, alert.severity, alert.starts_at, alert.ends_at = (
            "firing",
            signal["severity"],
            ts,
            None,
        )
        session.add(alert)
        await _occurrence(session, alert, timing=timing)
        what = "alert.raised"
    elif firing:
        if signal["severity"] == alert.severity:
            return None
        alert.severity = signal["severity"]
        what = "alert.updated"
    elif was_firing:
        alert.state, alert.ends_at = "resolved", ts
        await _recovered(session, alert)
        what = "alert.resolved"
    else:
        return None
    session.add(alert)
    _announce(session, what, alert_json(alert), fp)
    return alert


async def resolve(session: AsyncSession, alert: Alert, *, now_ms: int, reason: str) -> None:
    """End a firing alert from outside the stream (its rule was deleted or disabled)."""
    alert.state, alert.ends_at, alert.updated_at = "resolved", now_ms, now_ms
    alert.summary = f"{alert.summary} ({reason})"[:1000]
    await _recovered(session, alert)
    session.add(alert)
    _announce(session, "alert.resolved", alert_json(alert), alert.fingerprint)


async def _occurrence(session: AsyncSession, alert: Alert, *, timing: Timing) -> None:
    """Count the alert's firing into the open incident of its rule and app (or open one)."""
    found = await session.exec(
        select(Incident).where(
            Incident.rule_id == alert.rule_id, Incident.app == alert.app, Incident.state == "open"
        )
    )
    incident = found.first()
    opened = incident is None
    if incident is None:
        incident = Incident(
            id=str(uuid.uuid4()),
            rule_id=alert.rule_id,
            rule_name=alert.rule_name,
            app=alert.app,
            state="open",
            severity=alert.severity,
            first_seen=alert.starts_at,
            last_seen=alert.starts_at,
        )
    incident.occurrences += 1
    incident.firing += 1
    incident.last_seen = max(incident.last_seen, alert.starts_at)
    incident.recovered_at = None
    if RANK.get(Level(alert.severity), 0) > RANK.get(Level(incident.severity), 0):
        incident.severity = alert.severity
    if incident.deployment_id is None and alert.app:
        await _correlate(session, incident, at_ms=alert.starts_at, timing=timing)
    session.add(incident)
    alert.incident_id = incident.id
    what = "incident.opened" if opened else "incident.updated"
    _announce(session, what, incident_json(incident), incident.id)


async def _recovered(session: AsyncSession, alert: Alert) -> None:
    if alert.incident_id is None:
        return
    incident = await session.get(Incident, alert.incident_id)
    if incident is None or incident.state != "open":
        return
    incident.firing = max(0, incident.firing - 1)
    if incident.firing == 0:
        incident.recovered_at = alert.ends_at
        _announce(session, "incident.recovered", incident_json(incident), incident.id)
    session.add(incident)


async def _correlate(
    session: AsyncSession, incident: Incident, *, at_ms: int, timing: Timing
) -> None:
    """Link the most recent deployment of the app that started before the alert and was
    still changing, or had just finished, within the window before it."""
    found = await session.exec(
        select(Deployment)
        .where(
            Deployment.app == incident.app,
            col(Deployment.started_at) <= at_ms,
            col(Deployment.updated_at) >= at_ms - timing.correlation_window_ms,
        )
        .order_by(col(Deployment.started_at).desc())
        .limit(1)
    )
    deployment = found.first()
    if deployment is None:
        return
    incident.deployment_id = deployment.deployment_id
    incident.deployment = dumps(
        {
            "instance": deployment.instance,
            "version": deployment.version,
            "state": deployment.state,
            "started_at": deployment.started_at,
            "alert_after_ms": at_ms - deployment.started_at,
        }
    )


async def record_deployment(
    session: AsyncSession, data: dict[str, Any], *, at_ms: int
) -> Deployment | None:
    """Remember a deploy.events state change (what correlation looks up)."""
    deployment_id = str(data.get("deployment_id") or "")
    if not deployment_id:
        return None
    row = await session.get(Deployment, deployment_id)
    if row is None:
        row = Deployment(deployment_id=deployment_id, started_at=at_ms, updated_at=at_ms)
    row.app = str(data.get("app") or row.app)[:200]
    row.instance = str(data.get("instance") or row.instance)[:200]
    row.version = str(data.get("version") or row.version)[:100]
    row.state = str(data.get("state") or row.state)[:40]
    row.started_at = min(row.started_at, at_ms)
    row.updated_at = max(row.updated_at, at_ms)
    session.add(row)
    return row


async def close_quiet_incidents(session: AsyncSession, *, now_ms: int, timing: Timing) -> int:
    """Close open incidents that have had no firing alert for the close-after period."""
    found = await session.exec(
        select(Incident).where(
            Incident.state == "open",
            Incident.firing == 0,
            col(Incident.recovered_at) <= now_ms - timing.incident_close_after_ms,
        )
    )
    closed = 0
    for incident in found:
        incident.state, incident.closed_at = "closed", now_ms
        session.add(incident)
        _announce(session, "incident.closed", incident_json(incident), incident.id)
        closed += 1
    return closed
