"""build.commands handling against a real SQLite database: queue once, reject, cancel."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events.envelope import CloudEvent
from services.build.handlers import on_build_commands
from services.build.models import BuildTask
from tests.build.conftest import (
    DeadLetters,
    batch,
    cancel,
    command,
    emitted,
    kinds,
    requested,
    task,
)

WEB = {"name": "web", "type": "process", "source": {"dir": "/srv/shop/web"}}

Sessions = async_sessionmaker[AsyncSession]


async def _tasks(sessions: Sessions) -> list[BuildTask]:
    async with sessions() as session:
        return list((await session.exec(select(BuildTask))).all())


async def test_a_request_is_queued_once(sessions: Sessions) -> None:
    event = requested("b-1", [WEB])
    intake = await on_build_commands(batch(event), sessions)
    assert intake.queued == ["b-1"]
    # Redelivered, and asked again under a new event id: still one build.
    again = await on_build_commands(batch(event, requested("b-1", [WEB])), sessions)
    assert again.queued == []
    [queued] = await _tasks(sessions)
    assert (queued.build_id, queued.app, queued.version) == ("b-1", "shop", "1.0.0")
    assert (queued.status, queued.attempt, queued.worker) == ("QUEUED", 1, None)
    assert queued.created_at is not None
    assert await emitted(sessions) == []  # started comes from the runner


async def _rejected(sessions: Sessions, event: CloudEvent) -> tuple[str, list[Any]]:
    dead = DeadLetters()
    b = batch(event, dead=dead)
    await on_build_commands(b, sessions)
    await b.flush()
    assert b.rejected == 1
    [(record, reason)] = dead.rejected
    assert record.value == b.records[0].value  # the original bytes, untouched
    return reason, await emitted(sessions)


@pytest.mark.parametrize(
    ("components", "reason"),
    [
        ([], "build b-2 of app shop has no components"),
        (
            [{"name": "web", "type": "lambda", "source": {"dir": "/x"}}],
            "component web: unknown type 'lambda' (expected helm, job, microservice, process)",
        ),
        (
            [{"name": "web", "type": "process"}],
            "component web: no source (a process needs source.dir or source.git)",
        ),
        (
            [{"name": "web", "type": "process", "source": {"image": "web@sha256:00"}}],
            "component web: a process component is built from source.dir or source.git, "
            "not source.image",
        ),
        (
            [{"name": "web", "type": "process", "source": {"dir": "src/web"}}],
            "component web: source.dir must be an absolute path, got 'src/web'",
        ),
        ([WEB, WEB], "component web appears twice"),
    ],
)
async def test_unbuildable_requests_are_dead_lettered_and_reported(
    sessions: Sessions, components: list[dict[str, Any]], reason: str
) -> None:
    said, events = await _rejected(sessions, requested("b-2", components))
    assert said == reason
    [failed] = events
    assert (failed.type, failed.subject, failed.key) == ("failed", "b-2", b"shop")
    assert failed.data["reason"] == reason and failed.data["build_id"] == "b-2"
    stored = await task(sessions, "b-2")
    assert (stored.status, stored.reason) == ("FAILED", reason)
    assert stored.finished_at is not None


async def test_unknown_fields_are_refused_but_still_reported(sessions: Sessions) -> None:
    event = command("requested", {"build_id": "b-3", "app": "shop", "colour": "red"})
    reason, [failed] = await _rejected(sessions, event)
    assert reason.startswith("invalid build.requested: ")
    assert "colour" in reason
    assert failed.type == "failed" and failed.data["reason"] == reason


async def test_without_build_id_or_app_only_the_dead_letter_remains(sessions: Sessions) -> None:
    reason, events = await _rejected(sessions, command("requested", {"app": "shop"}))
    assert reason == "invalid build.requested: no build_id"
    assert events == [] and await _tasks(sessions) == []
    reason, _ = await _rejected(sessions, command("requested", ["not", "an", "object"]))
    assert reason == "invalid build.requested: data is not a JSON object"
    event = CloudEvent.create(type="io.opsline.build.requested", source="x", data=b"{nope")
    reason, _ = await _rejected(sessions, event)
    assert reason.startswith("invalid build.requested: data is not valid JSON")


async def test_other_event_types_are_dead_lettered(sessions: Sessions) -> None:
    reason, events = await _rejected(sessions, command("exploded", {"build_id": "b-4"}))
    assert reason == "unexpected event type 'io.opsline.build.exploded' on build.commands"
    assert events == []


async def test_a_rejected_id_never_builds_later(sessions: Sessions) -> None:
    await _rejected(sessions, requested("b-5", []))
    intake = await on_build_commands(batch(requested("b-5", [WEB])), sessions)
    assert intake.queued == [] and (await task(sessions, "b-5")).status == "FAILED"


async def test_cancel_of_a_queued_build_is_immediate(sessions: Sessions) -> None:
    await on_build_commands(batch(requested("b-6", [WEB])), sessions)
    intake = await on_build_commands(batch(cancel("b-6")), sessions)
    assert intake.cancel_running == [] and intake.events == 1
    stored = await task(sessions, "b-6")
    assert stored.status == "CANCELLED" and stored.finished_at is not None
    events = await emitted(sessions)
    assert kinds(events) == ["cancelled"]
    assert events[0].data == {"build_id": "b-6", "app": "shop"} and events[0].key == b"shop"
    # Cancelled twice, or a cancel of something unknown: nothing more happens.
    await on_build_commands(batch(cancel("b-6"), cancel("nobody")), sessions)
    assert kinds(await emitted(sessions)) == ["cancelled"]


async def test_a_bad_cancel_is_dead_lettered(sessions: Sessions) -> None:
    reason, _ = await _rejected(sessions, command("cancel_requested", {"app": "shop"}))
    assert reason == "invalid build.cancel_requested: no build_id"
