"""The alert manager's consumer: alert signals and deploy events into the database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events import topics as t
from libs.events.envelope import parse_rfc3339
from libs.events.worker import Batch, Record
from services.aiops_detector import lifecycle, notify

DEPLOY_STATE_CHANGED = "io.opsline.deploy.state_changed"
ALERT_SIGNAL = "io.opsline.alert.signal"


class SignalIn(BaseModel):
    """What the stream puts on aiops.signals (checked: anyone may publish there)."""

    model_config = ConfigDict(extra="ignore")

    fingerprint: str = Field(min_length=1, max_length=32)
    state: str = Field(pattern="^(firing|resolved)$")
    rule_id: str = Field(min_length=1, max_length=40)
    rule_name: str = Field(max_length=100)
    severity: str = Field(pattern="^(WARNING|CRITICAL|)$")
    labels: dict[str, str]
    value: float
    ts_ms: int = Field(ge=0)
    summary: str = ""
    score: float = 0.0


async def on_records(
    batch: Batch,
    sessions: async_sessionmaker[AsyncSession],
    *,
    timing: lifecycle.Timing,
    wake: Callable[[], None],
) -> None:
    """One transaction per batch: alerts, incidents, notification groups and outbox rows."""
    changed = False
    async with sessions() as session, session.begin():
        for record in batch.records:
            if record.topic == t.AIOPS_SIGNALS:
                signal = await _signal(batch, record)
                if signal is None:
                    continue
                now = notify.now_ms()
                alert = await lifecycle.apply_signal(session, signal, now_ms=now, timing=timing)
                if alert is not None:
                    await notify.enqueue(session, alert, at_ms=now)
                    changed = True
            elif record.topic == t.DEPLOY_EVENTS and record.type == DEPLOY_STATE_CHANGED:
                await _deploy(batch, record, session)
    if changed:
        wake()


async def _signal(batch: Batch, record: Record) -> dict[str, Any] | None:
    assert record.event is not None
    try:
        return SignalIn.model_validate_json(record.event.data).model_dump()
    except ValidationError as exc:
        await batch.reject(record, f"invalid alert signal: {exc.errors()[0]['msg']}")
        return None


async def _deploy(batch: Batch, record: Record, session: AsyncSession) -> None:
    event = record.event
    assert event is not None
    try:
        data = event.json()
        at_ms = (
            int(parse_rfc3339(event.time).timestamp() * 1000) if event.time else record.timestamp
        )
    except ValueError as exc:
        await batch.reject(record, f"invalid deploy event: {exc}")
        return
    if isinstance(data, dict):
        await lifecycle.record_deployment(session, data, at_ms=at_ms)
