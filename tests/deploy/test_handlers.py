"""deploy.commands intake: once per deployment id, bad commands dead-lettered with a reason."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from sqlmodel import select

from libs import db
from libs.events.envelope import CloudEvent, to_kafka
from libs.events.outbox import OutboxMessage
from libs.events.worker import Batch, Record
from services.deploy import handlers
from services.deploy.models import TABLES, DeployTask


class _DeadLetters:
    def __init__(self) -> None:
        self.rejected: list[str] = []

    async def deadletter(self, record: Record, reason: str, *, partial: bool = False) -> Any:
        self.rejected.append(reason)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _record(type_: str, data: dict[str, Any], offset: int) -> Record:
    event = CloudEvent.create(type=type_, source="opsline/appmanager", data=data)
    _, value, headers = to_kafka(event)
    return Record("deploy.commands", 0, offset, b"hello-dev", value, headers, 0, event)


REQUEST = {
    "deployment_id": "d-1",
    "instance": "hello-dev",
    "app": "hello",
    "version": "0.1.0",
    "target": {"cluster": "local", "namespace": "demo", "stage": "dev"},
    "components": [{"spec": {"name": "web", "type": "process"}}],
}


async def test_a_redelivered_command_queues_one_deployment(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path}/deploy.db")
    await db.create_tables(engine, [OutboxMessage, *TABLES])
    sessions = db.session_factory(engine)
    dead = _DeadLetters()
    pokes: list[int] = []
    records = [
        _record("io.opsline.deploy.requested", REQUEST, 1),
        _record("io.opsline.deploy.requested", REQUEST, 2),  # redelivered
        _record("io.opsline.deploy.requested", {**REQUEST, "components": []}, 3),
        _record("io.opsline.deploy.requested", {"instance": "x"}, 4),
        _record("io.opsline.deploy.exploded", REQUEST, 5),
        _record("io.opsline.deploy.requested", {**REQUEST, "bogus": 1}, 6),
    ]
    await handlers.on_commands(
        Batch(dead, records),
        sessions,  # type: ignore[arg-type]
        poke=lambda: pokes.append(1),
    )
    async with sessions() as session:
        tasks = (await session.exec(select(DeployTask))).all()
        events = (await session.exec(select(OutboxMessage))).all()
    assert [(t.deployment_id, t.state, t.kind) for t in tasks] == [("d-1", "CREATED", "deploy")]
    assert len(events) == 1 and orjson.loads(events[0].value)["state"] == "CREATED"
    assert pokes == [1]
    assert dead.rejected[0] == "rejected: a deployment needs components"
    assert dead.rejected[1] == "rejected: deployment_id and instance are required"
    assert "unknown command type 'io.opsline.deploy.exploded'" in dead.rejected[2]
    assert "bogus" in dead.rejected[3]
    await engine.dispose()
