"""deploy.commands intake: once per deployment id, bad commands dead-lettered with a reason."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from sqlmodel import select

from libs import db
from libs.events.envelope import CloudEvent, to_kafka
from libs.events.idempotency import ProcessedEvent
from libs.events.outbox import OutboxMessage
from libs.events.worker import Batch, Record
from services.deploy import handlers, service
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


async def test_retry_and_terminate_act_once_and_only_where_they_can(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path}/deploy.db")
    await db.create_tables(engine, [OutboxMessage, ProcessedEvent, *TABLES])
    sessions = db.session_factory(engine)
    dead = _DeadLetters()

    async def handle(*records: Record) -> None:
        await handlers.on_commands(Batch(dead, list(records)), sessions, poke=lambda: None)  # type: ignore[arg-type]

    async def state(deployment_id: str) -> tuple[str, str | None]:
        async with sessions() as session:
            task = await session.get(DeployTask, deployment_id)
            assert task is not None
            return task.state, task.reason

    async def set_state(deployment_id: str, value: str) -> None:
        async with sessions() as session:
            task = await session.get(DeployTask, deployment_id)
            assert task is not None
            task.state, task.worker, task.attempt = value, "w1", 1
            session.add(task)
            await session.commit()

    ids = {"deployment_id": "d-1", "instance": "hello-dev"}
    await handle(_record("io.opsline.deploy.requested", REQUEST, 1))
    # a deployment that waits to start can't be retried, and stops at once when asked
    await handle(_record("io.opsline.deploy.retry_requested", ids, 2))
    assert dead.rejected[-1] == (
        "rejected: deployment d-1 is CREATED; only WAIT_FOR_OP or FAILURE retry"
    )
    await set_state("d-1", "WAIT_FOR_OP")
    retry = _record("io.opsline.deploy.retry_requested", ids, 3)
    await handle(retry)
    assert await state("d-1") == ("CREATED", "retry requested by an operator")
    await set_state("d-1", "FAILURE")
    await handle(retry)  # the same command redelivered: not a second retry
    assert (await state("d-1"))[0] == "FAILURE"
    # one in progress is stopped by its worker: a Termination records the request
    await set_state("d-1", "WAITING")
    await handle(_record("io.opsline.deploy.terminate_requested", ids, 4))
    async with sessions() as session:
        assert await service.terminations(session) == {"d-1"}
    await set_state("d-1", "SUCCESS")
    await handle(_record("io.opsline.deploy.terminate_requested", ids, 5))
    assert dead.rejected[-1] == "rejected: deployment d-1 has finished (SUCCESS)"
    await handle(
        _record("io.opsline.deploy.terminate_requested", {**ids, "deployment_id": "d-9"}, 6)
    )
    assert dead.rejected[-1] == "rejected: no deployment d-9"
    async with sessions() as session:
        assert await service.terminations(session) == set()
    await engine.dispose()


async def test_a_new_deployment_supersedes_one_waiting_for_an_operator(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path}/deploy.db")
    await db.create_tables(engine, [OutboxMessage, ProcessedEvent, *TABLES])
    sessions = db.session_factory(engine)
    await handlers.on_commands(
        Batch(_DeadLetters(), [_record("io.opsline.deploy.requested", REQUEST, 1)]),
        sessions,  # type: ignore[arg-type]
        poke=lambda: None,
    )
    async with sessions() as session:
        task = await session.get(DeployTask, "d-1")
        assert task is not None
        task.state, task.reason = "WAIT_FOR_OP", "component web: port 8031 never opened"
        session.add(task)
        await service.record(
            session,
            deployment_id="d-2",
            instance="hello-dev",
            kind="rollback",
            request={"deployment_id": "d-2", "instance": "hello-dev"},
        )
        await session.commit()
        assert await service.claim(session, worker="w1", limit=4) == ["d-2"]
        await session.commit()
        old = await session.get(DeployTask, "d-1")
        assert old is not None and old.state == "FAILURE"
        assert old.reason == ("component web: port 8031 never opened; superseded by rollback d-2")
    await engine.dispose()
