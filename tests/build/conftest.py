"""Build service test kit: a real SQLite database, records built by hand, the outbox read back."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs import db
from libs.events.envelope import CloudEvent, from_kafka, to_kafka
from libs.events.outbox import OutboxMessage
from libs.events.worker import Batch, Record
from libs.objectstore import LocalStore
from services.build.artifacts import ArtifactStore
from services.build.models import TABLES, BuildTask

_offsets = itertools.count()


@dataclass
class DeadLetters:
    """Stands in for the Worker a Batch needs: records what was dead-lettered, and why."""

    rejected: list[tuple[Record, str]] = field(default_factory=list)

    async def deadletter(self, record: Record, reason: str, *, partial: bool = False) -> Any:
        self.rejected.append((record, reason))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass(frozen=True)
class Emitted:
    type: str
    subject: str | None
    key: bytes | None
    data: dict[str, Any]


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.create_engine(f"sqlite:///{tmp_path}/build.db")
    await db.create_tables(engine, [OutboxMessage, *TABLES])
    yield db.session_factory(engine)
    await engine.dispose()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(LocalStore(tmp_path / "artifacts"))


def command(type: str, data: Any, *, subject: str | None = None) -> CloudEvent:
    return CloudEvent.create(
        type=f"io.opsline.build.{type}", source="opsline/appmanager", data=data, subject=subject
    )


def requested(
    build_id: str, components: list[dict[str, Any]], *, app: str = "shop", version: str = "1.0.0"
) -> CloudEvent:
    data = {"build_id": build_id, "app": app, "version": version, "components": components}
    return command("requested", data, subject=build_id)


def cancel(build_id: str, *, app: str = "shop") -> CloudEvent:
    return command("cancel_requested", {"build_id": build_id, "app": app}, subject=build_id)


def record(event: CloudEvent, *, key: str | None = "shop") -> Record:
    _, value, headers = to_kafka(event)
    return Record(
        topic="build.commands",
        partition=0,
        offset=next(_offsets),
        key=key.encode() if key else None,
        value=value,
        headers=headers,
        timestamp=0,
        event=event,
    )


def batch(*events: CloudEvent, dead: DeadLetters | None = None) -> Batch:
    return Batch(dead or DeadLetters(), [record(e) for e in events])  # type: ignore[arg-type]


async def emitted(sessions: async_sessionmaker[AsyncSession]) -> list[Emitted]:
    """The build.events rows in the outbox, decoded, in the order they were written."""
    async with sessions() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
    out = []
    for row in rows:
        assert row.topic == "build.events"
        headers = [(k, v.encode()) for k, v in orjson.loads(row.headers)]
        event = from_kafka(row.value, headers)
        assert event.source == "opsline/build"
        out.append(
            Emitted(
                event.type.removeprefix("io.opsline.build."), event.subject, row.key, event.json()
            )
        )
    return out


def kinds(events: list[Emitted]) -> list[str]:
    """started, step:web/pack:running, … — the shape of a build's event stream."""
    out = []
    for e in events:
        if e.type == "step":
            out.append(f"step:{e.data['component']}/{e.data['step']}:{e.data['status']}")
        else:
            out.append(e.type)
    return out


async def task(sessions: async_sessionmaker[AsyncSession], build_id: str) -> BuildTask:
    async with sessions() as session:
        found = await session.get(BuildTask, build_id)
    assert found is not None, build_id
    return found


def make_chart(root: Path, name: str = "web", *, broken: bool = False) -> Path:
    chart = root / name
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: 0.3.0\n")
    (chart / "values.yaml").write_text("replicas: 2\n")
    body = "{{ .Values.replicas | nosuchfunction }}" if broken else "{{ .Values.replicas }}"
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        f'data:\n  replicas: "{body}"\n'
    )
    return chart


def make_source(root: Path) -> Path:
    src = root / "src"
    (src / "app" / "__pycache__").mkdir(parents=True)
    (src / "app" / "main.py").write_text("print('hello')\n")
    (src / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0junk")
    (src / "app" / "util.pyc").write_bytes(b"\0junk")
    (src / "run.sh").write_text("#!/bin/sh\nexec python app/main.py\n")
    (src / "run.sh").chmod(0o755)
    (src / "logs").mkdir()
    (src / "logs" / "today.log").write_text("noise\n")
    (src / "README.md").write_text("# shop\n")
    return src
