"""The alert manager's handler: signals and deploy events in, bad records dead-lettered."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events import topics as t
from libs.events.envelope import CloudEvent
from libs.events.worker import Batch, Record
from services.aiops_detector import handlers, lifecycle, service
from services.aiops_detector.models import Alert, Deployment
from tests.aiops_detector.test_lifecycle import signal


class DeadLetters:
    """Stands in for the worker's dead-letter publishing: keeps the reasons."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    async def deadletter(self, record: Record, reason: str, *, partial: bool = False) -> Any:
        self.reasons.append(reason)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def record(topic: str, type_: str, data: Any, time: str | None = None) -> Record:
    event = CloudEvent.create(type=type_, source="tests", data=data, time=time)
    return Record(topic, 0, 0, b"k", event.data, [], 0, event)


async def test_signals_and_deploys_are_applied_and_bad_ones_dead_lettered(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    dead = DeadLetters()
    woken: list[int] = []
    records = [
        record(
            t.DEPLOY_EVENTS,
            handlers.DEPLOY_STATE_CHANGED,
            {"deployment_id": "d1", "app": "shop", "instance": "shop-dev", "state": "SUCCESS"},
            time="2026-11-22T00:00:00Z",
        ),
        record(t.AIOPS_SIGNALS, handlers.ALERT_SIGNAL, signal("firing", 1000)),
        record(
            t.AIOPS_SIGNALS, handlers.ALERT_SIGNAL, {**signal("firing", 1000), "state": "burning"}
        ),
        record(t.AIOPS_SIGNALS, handlers.ALERT_SIGNAL, {"fingerprint": "x"}),
        record(t.DEPLOY_EVENTS, "io.opsline.deploy.requested", {"deployment_id": "ignored"}),
    ]
    batch = Batch(dead, records)  # type: ignore[arg-type]
    await handlers.on_records(
        batch, sessions, timing=lifecycle.Timing(), wake=lambda: woken.append(1)
    )
    await batch.flush()
    assert len(dead.reasons) == 2
    assert all(r.startswith("invalid alert signal") for r in dead.reasons)
    assert woken == [1]
    async with sessions() as session:
        assert (await session.get(Alert, "fp-a")) is not None
        deployment = await session.get(Deployment, "d1")
        assert await session.get(Deployment, "ignored") is None
        firing = await service.list_alerts(session=session, now_ms=2000, state="firing")
    assert deployment is not None and deployment.started_at == 1795305600000
    assert [a["fingerprint"] for a in firing] == ["fp-a"]
