"""Rules, silences and receivers as the API manages them; alert, incident and health queries."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.aiops_detector import lifecycle
from services.aiops_detector.models import (
    Alert,
    AlertRule,
    Incident,
    Receiver,
    Silence,
    dumps,
    loads,
)
from services.aiops_detector.notify import active_silences, match_labels, silenced_by
from services.aiops_detector.rules import LABEL_PATTERN, NAME_PATTERN, Matcher, Rule, RuleSpec

# Health: each firing alert takes this much off 100 (never below 0).
HEALTH_PENALTY = {"CRITICAL": 40, "WARNING": 15}


class SilenceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matchers: list[Matcher] = Field(min_length=1, max_length=20)
    starts_at: int | None = Field(default=None, ge=0, description="epoch ms; default now")
    ends_at: int = Field(gt=0, description="epoch ms")
    comment: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _window(self) -> SilenceSpec:
        if self.starts_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class ReceiverSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    kind: Literal["webhook", "alertmanager"]
    url: HttpUrl = Field(description="webhook URL, or the Alertmanager base URL")
    headers: dict[str, str] = Field(
        default_factory=dict, description="sent with each request (e.g. Authorization); secret"
    )
    matchers: list[Matcher] = Field(default_factory=list, max_length=20)
    group_by: list[str] = Field(default_factory=lambda: ["app", "alertname"], max_length=20)
    group_wait_s: float = Field(default=30.0, ge=0, le=3600)
    group_interval_s: float = Field(default=300.0, ge=0, le=86400)
    repeat_interval_s: float | None = Field(
        default=None, gt=0, le=7 * 86400, description="default 4h; 60s for an Alertmanager"
    )
    send_resolved: bool = True

    @field_validator("group_by")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        import re

        for name in value:
            if not re.fullmatch(LABEL_PATTERN, name):
                raise ValueError(f"group_by: {name!r} is not a label name")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 20 or any(len(k) > 100 or len(v) > 4096 for k, v in value.items()):
            raise ValueError("at most 20 headers, names to 100 and values to 4096 characters")
        return value


# --- rules ------------------------------------------------------------------------


def rule_of(row: AlertRule) -> Rule:
    return Rule(id=row.id, **loads(row.spec))


async def list_rules(*, session: AsyncSession) -> list[Rule]:
    rows = await session.exec(select(AlertRule).order_by(col(AlertRule.name)))
    return [rule_of(r) for r in rows]


async def save_rule(
    *, session: AsyncSession, spec: RuleSpec, rule_id: str | None, now_ms: int
) -> tuple[Rule, bool]:
    """Create (rule_id None) or replace a rule; (rule, created)."""
    row = await session.get(AlertRule, rule_id) if rule_id else None
    created = row is None
    if row is None:
        row = AlertRule(id=rule_id or uuid.uuid4().hex[:12], name=spec.name, created_at=now_ms)
    row.name, row.spec, row.updated_at = spec.name, dumps(spec.model_dump(mode="json")), now_ms
    session.add(row)
    if not spec.enabled:
        await resolve_rule_alerts(session=session, rule_id=row.id, now_ms=now_ms, reason="disabled")
    return rule_of(row), created


async def delete_rule(*, session: AsyncSession, rule_id: str, now_ms: int) -> bool:
    row = await session.get(AlertRule, rule_id)
    if row is None:
        return False
    await session.delete(row)
    await resolve_rule_alerts(session=session, rule_id=rule_id, now_ms=now_ms, reason="deleted")
    return True


async def resolve_rule_alerts(
    *, session: AsyncSession, rule_id: str, now_ms: int, reason: str
) -> list[Alert]:
    found = await session.exec(
        select(Alert).where(Alert.rule_id == rule_id, Alert.state == "firing")
    )
    alerts = list(found)
    for alert in alerts:
        await lifecycle.resolve(session, alert, now_ms=now_ms, reason=f"rule {reason}")
    return alerts


# --- silences ---------------------------------------------------------------------


def silence_json(row: Silence, now_ms: int) -> dict[str, Any]:
    state = "pending" if now_ms < row.starts_at else "active" if now_ms < row.ends_at else "expired"
    return {
        "id": row.id,
        "matchers": loads(row.matchers),
        "starts_at": row.starts_at,
        "ends_at": row.ends_at,
        "comment": row.comment,
        "created_by": row.created_by,
        "state": state,
    }


async def save_silence(
    *, session: AsyncSession, spec: SilenceSpec, silence_id: str | None, by: str, now_ms: int
) -> Silence:
    row = await session.get(Silence, silence_id) if silence_id else None
    if row is None:
        row = Silence(id=silence_id or uuid.uuid4().hex[:12], created_at=now_ms, created_by=by)
    row.matchers = dumps([m.model_dump() for m in spec.matchers])
    row.starts_at = spec.starts_at if spec.starts_at is not None else now_ms
    row.ends_at = spec.ends_at
    row.comment = spec.comment
    if row.ends_at <= row.starts_at:
        raise ValueError("ends_at must be after starts_at")
    session.add(row)
    return row


# --- receivers --------------------------------------------------------------------


def receiver_json(row: Receiver) -> dict[str, Any]:
    """A receiver as the API shows it: header names only, never their values."""
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "url": row.url,
        "headers": sorted(loads(row.headers)),
        "matchers": loads(row.matchers),
        "group_by": loads(row.group_by),
        "group_wait_s": row.group_wait_s,
        "group_interval_s": row.group_interval_s,
        "repeat_interval_s": row.repeat_interval_s,
        "send_resolved": row.send_resolved,
    }


async def save_receiver(
    *, session: AsyncSession, spec: ReceiverSpec, receiver_id: str | None, now_ms: int
) -> Receiver:
    row = await session.get(Receiver, receiver_id) if receiver_id else None
    if row is None:
        row = Receiver(
            id=receiver_id or uuid.uuid4().hex[:12], name="", kind="", url="", created_at=now_ms
        )
    repeat = spec.repeat_interval_s or (60.0 if spec.kind == "alertmanager" else 14400.0)
    row.name, row.kind, row.url = spec.name, spec.kind, str(spec.url)
    row.headers = dumps(spec.headers)
    row.matchers = dumps([m.model_dump() for m in spec.matchers])
    row.group_by = dumps(spec.group_by)
    row.group_wait_s, row.group_interval_s = spec.group_wait_s, spec.group_interval_s
    row.repeat_interval_s, row.send_resolved = repeat, spec.send_resolved
    row.updated_at = now_ms
    session.add(row)
    return row


# --- alerts, incidents, health ----------------------------------------------------


async def list_alerts(
    *,
    session: AsyncSession,
    now_ms: int,
    state: str | None = None,
    app: str | None = None,
    severity: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    query = select(Alert)
    if state:
        query = query.where(Alert.state == state)
    if app:
        query = query.where(Alert.app == app)
    if severity:
        query = query.where(Alert.severity == severity)
    rows = await session.exec(query.order_by(col(Alert.starts_at).desc()).limit(limit))
    silences = await active_silences(session, now_ms)
    return [alert_view(a, silences, now_ms) for a in rows]


def alert_view(alert: Alert, silences: list[Silence], now_ms: int) -> dict[str, Any]:
    out = lifecycle.alert_json(alert)
    out["silenced_by"] = [s.id for s in silenced_by(silences, match_labels(alert), now_ms)]
    return out


async def list_incidents(
    *, session: AsyncSession, state: str | None = None, app: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    query = select(Incident)
    if state:
        query = query.where(Incident.state == state)
    if app:
        query = query.where(Incident.app == app)
    rows = await session.exec(query.order_by(col(Incident.last_seen).desc()).limit(limit))
    return [lifecycle.incident_json(i) for i in rows]


async def get_incident(*, session: AsyncSession, incident_id: str) -> dict[str, Any] | None:
    row = await session.get(Incident, incident_id)
    if row is None:
        return None
    alerts = await session.exec(select(Alert).where(Alert.incident_id == incident_id))
    return {**lifecycle.incident_json(row), "alerts": [lifecycle.alert_json(a) for a in alerts]}


def health_score(severities: list[str]) -> int:
    return max(0, 100 - sum(HEALTH_PENALTY.get(s, 0) for s in severities))


async def app_health(*, session: AsyncSession, app: str) -> dict[str, Any]:
    alerts = list(
        await session.exec(select(Alert).where(Alert.app == app, Alert.state == "firing"))
    )
    score = health_score([a.severity for a in alerts])
    counts = {level: sum(a.severity == level for a in alerts) for level in HEALTH_PENALTY}
    open_incidents = await session.exec(
        select(Incident.id).where(Incident.app == app, Incident.state == "open")
    )
    return {
        "app": app,
        "score": score,
        "status": "healthy" if score >= 90 else "degraded" if score >= 50 else "unhealthy",
        "firing": counts,
        "alerts": [a.fingerprint for a in alerts],
        "open_incidents": list(open_incidents),
    }
