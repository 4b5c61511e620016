"""The runner and reaper on a real SQLite queue: success, failure, cancel, retries, timeouts."""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.schemas.opsline.v1 import catalog_pb2
from services.build import claims, packing
from services.build.artifacts import ArtifactStore
from services.build.builders import BuildContext, Builder, default_builders
from services.build.handlers import on_build_commands
from services.build.models import BuildTask, utcnow
from services.build.runner import Runner
from services.build.settings import BuildSettings
from tests.build.conftest import (
    batch,
    cancel,
    emitted,
    kinds,
    make_chart,
    make_source,
    requested,
    task,
)

Sessions = async_sessionmaker[AsyncSession]
DIGEST = "sha256:" + "cd" * 32
SLEEP = "29.4321"  # a sleep no one else runs: found in /proc while the build is running


class Sleeper:
    """A builder whose one step runs `sleep` until it is stopped."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def build(self, component: catalog_pb2.ComponentSpec, ctx: BuildContext) -> list[Any]:
        async with ctx.step(component.name, "run") as log:
            self.started.set()
            await packing.run_command(["sleep", SLEEP], log=log)
        return []


def sleeping() -> bool:
    """Whether a Sleeper's command, started by this test process, is still alive."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")[:2]
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if argv == [b"sleep", SLEEP.encode()] and parent == os.getpid():
            return True
    return False


async def eventually(check: Any, timeout: float = 5.0) -> None:
    """Wait until check() (sync or async) is true."""
    for _ in range(int(timeout / 0.05)):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true after {timeout}s: {check}")


def runner(
    sessions: Sessions,
    store: ArtifactStore,
    *,
    worker: str = "w-1",
    builders: dict[str, Builder] | None = None,
    **settings: Any,
) -> Runner:
    return Runner(
        sessions=sessions,
        settings=BuildSettings(worker_id=worker, **settings),
        store=store,
        builders=builders or default_builders(),
    )


async def queue(sessions: Sessions, build_id: str, components: list[dict[str, Any]]) -> None:
    intake = await on_build_commands(batch(requested(build_id, components)), sessions)
    assert intake.queued == [build_id]


def process(name: str, src: Path) -> dict[str, Any]:
    return {"name": name, "type": "process", "source": {"dir": str(src)}}


async def test_a_build_runs_to_success_with_artifacts_on_disk(
    sessions: Sessions, store: ArtifactStore, tmp_path: Path
) -> None:
    components = [
        process("web", make_source(tmp_path)),
        {"name": "chart", "type": "helm", "source": {"chart": str(make_chart(tmp_path / "c"))}},
        {"name": "db", "type": "microservice", "source": {"image": f"postgres@{DIGEST}"}},
    ]
    await queue(sessions, "b-1", components)
    r = runner(sessions, store)
    assert await r.claim_once() == ["b-1"]
    await r.join()
    events = await emitted(sessions)
    assert kinds(events) == [
        "started",
        "step:web/pack:running",
        "step:web/pack:succeeded",
        "step:chart/lint:running",
        "step:chart/lint:succeeded",
        "step:chart/package:running",
        "step:chart/package:succeeded",
        "step:db/image:running",
        "step:db/image:succeeded",
        "succeeded",
    ]
    assert all(e.subject == "b-1" and e.key == b"shop" for e in events)
    assert events[0].data == {"build_id": "b-1", "app": "shop", "worker": "w-1", "attempt": 1}
    done = events[-1].data
    assert (done["build_id"], done["app"], done["version"]) == ("b-1", "shop", "1.0.0")
    kinds_by_component = {a["component"]: a["kind"] for a in done["artifacts"]}
    assert kinds_by_component == {"web": "tar.gz", "chart": "helm-chart", "db": "image"}
    for artifact in done["artifacts"][:2]:
        data = Path(urlparse(artifact["uri"]).path).read_bytes()
        assert artifact["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert int(artifact["size"]) == len(data)  # int64 is a string in protobuf JSON
    assert done["artifacts"][2]["uri"] == f"postgres@{DIGEST}"
    stored = await task(sessions, "b-1")
    assert stored.status == "SUCCEEDED" and stored.worker == "w-1"
    assert stored.started_at is not None and stored.finished_at is not None
    assert len(stored.artifacts) > 10 and r.active == {}
    assert await r.claim_once() == []  # nothing left, and never twice


async def test_a_failing_component_fails_the_build_with_the_reason(
    sessions: Sessions, store: ArtifactStore, tmp_path: Path
) -> None:
    components = [
        process("web", make_source(tmp_path)),
        process("api", tmp_path / "missing"),
        process("never", make_source(tmp_path / "other")),
    ]
    await queue(sessions, "b-2", components)
    r = runner(sessions, store)
    await r.claim_once()
    await r.join()
    events = await emitted(sessions)
    assert kinds(events) == [
        "started",
        "step:web/pack:running",
        "step:web/pack:succeeded",
        "step:api/pack:running",
        "step:api/pack:failed",
        "failed",
    ]
    reason = f"component api: source directory {tmp_path / 'missing'} does not exist"
    assert events[-1].data == {
        "build_id": "b-2",
        "app": "shop",
        "component": "api",
        "reason": reason,
    }
    assert events[-2].data["log"] == [reason]
    stored = await task(sessions, "b-2")
    assert (stored.status, stored.reason) == ("FAILED", reason)


async def test_max_parallel_limits_what_one_worker_takes(
    sessions: Sessions, store: ArtifactStore
) -> None:
    sleeper = Sleeper()
    for n in range(3):
        await queue(sessions, f"b-{n}", [process("web", Path("/srv/web"))])
    r = runner(sessions, store, builders={"process": sleeper}, max_parallel=2)
    assert await r.claim_once() == ["b-0", "b-1"]
    assert await r.claim_once() == []
    other = runner(sessions, store, worker="w-2", builders={"process": sleeper})
    assert await other.claim_once() == ["b-2"]
    for each in (r, other):
        await each.shutdown()
    # Handed back untouched: QUEUED again, same attempt, no failure reported.
    for n in range(3):
        stored = await task(sessions, f"b-{n}")
        assert (stored.status, stored.attempt, stored.worker) == ("QUEUED", 1, None)
    assert "failed" not in kinds(await emitted(sessions))


async def test_cancel_of_a_running_build_kills_its_command(
    sessions: Sessions, store: ArtifactStore
) -> None:
    sleeper = Sleeper()
    await queue(sessions, "b-3", [process("web", Path("/srv/web"))])
    r = runner(sessions, store, builders={"process": sleeper})
    await r.claim_once()
    await asyncio.wait_for(sleeper.started.wait(), 5)
    await eventually(sleeping)
    intake = await on_build_commands(batch(cancel("b-3")), sessions)
    assert intake.cancel_running == ["b-3"]
    assert (await task(sessions, "b-3")).cancel_requested
    await r.watch_once()  # the flag, seen by whichever replica runs the build
    await asyncio.wait_for(r.join(), 5)
    assert not sleeping()
    events = await emitted(sessions)
    assert kinds(events) == [
        "started",
        "step:web/run:running",
        "step:web/run:failed",
        "cancelled",
    ]
    assert events[2].data["log"][-1] == "stopped: build cancelled"
    assert (await task(sessions, "b-3")).status == "CANCELLED"


async def test_a_dead_workers_build_is_retried_then_failed(
    sessions: Sessions, store: ArtifactStore, tmp_path: Path
) -> None:
    await queue(sessions, "b-4", [process("web", make_source(tmp_path))])
    reaper = runner(sessions, store, worker="reaper")
    # A worker claims the build and dies (no heartbeats from then on).
    async with sessions() as session, session.begin():
        await claims.claim(session, worker="dead-1", limit=1)
    assert await reaper.reap_once(utcnow() + timedelta(seconds=10)) == []  # not stale yet
    later = utcnow() + timedelta(seconds=31)
    assert await reaper.reap_once(later) == [("b-4", "requeued")]
    stored = await task(sessions, "b-4")
    assert (stored.status, stored.attempt, stored.worker) == ("QUEUED", 2, None)
    # The second attempt's worker dies too: that was the last attempt.
    async with sessions() as session, session.begin():
        [claimed] = await claims.claim(session, worker="dead-2", limit=1)
    assert claimed.attempt == 2
    assert await reaper.reap_once(later + timedelta(seconds=31)) == [("b-4", "failed")]
    events = await emitted(sessions)
    assert kinds(events) == ["started", "started", "failed"]
    assert [e.data.get("worker") for e in events[:2]] == ["dead-1", "dead-2"]
    assert events[1].data["attempt"] == 2
    assert events[2].data["reason"] == "build worker dead-2 stopped responding"
    assert (await task(sessions, "b-4")).status == "FAILED"


async def test_a_requeued_build_runs_on_a_live_worker(
    sessions: Sessions, store: ArtifactStore, tmp_path: Path
) -> None:
    await queue(sessions, "b-5", [process("web", make_source(tmp_path))])
    async with sessions() as session, session.begin():
        await claims.claim(session, worker="dead-1", limit=1)
    live = runner(sessions, store, worker="live")
    await live.reap_once(utcnow() + timedelta(seconds=31))
    assert await live.claim_once() == ["b-5"]
    await live.join()
    assert kinds(await emitted(sessions))[-1] == "succeeded"
    stored = await task(sessions, "b-5")
    assert (stored.status, stored.attempt, stored.worker) == ("SUCCEEDED", 2, "live")


async def test_a_worker_stops_a_build_taken_from_it(
    sessions: Sessions, store: ArtifactStore
) -> None:
    sleeper = Sleeper()
    await queue(sessions, "b-6", [process("web", Path("/srv/web"))])
    slow = runner(sessions, store, builders={"process": sleeper})
    await slow.claim_once()
    await asyncio.wait_for(sleeper.started.wait(), 5)
    # Its heartbeats were too late: another replica's reaper re-queued the build.
    other = runner(sessions, store, worker="w-2")
    assert await other.reap_once(utcnow() + timedelta(seconds=31)) == [("b-6", "requeued")]
    await slow.watch_once()
    await asyncio.wait_for(slow.join(), 5)
    assert not sleeping()
    assert kinds(await emitted(sessions))[-1] == "step:web/run:failed"  # and no final word
    stored = await task(sessions, "b-6")
    assert (stored.status, stored.attempt) == ("QUEUED", 2)


async def test_a_build_that_runs_too_long_fails(sessions: Sessions, store: ArtifactStore) -> None:
    sleeper = Sleeper()
    await queue(sessions, "b-7", [process("web", Path("/srv/web"))])
    r = runner(sessions, store, builders={"process": sleeper}, build_timeout_s=0.5)
    await r.claim_once()
    await asyncio.wait_for(r.join(), 5)
    assert not sleeping()
    events = await emitted(sessions)
    assert kinds(events)[-2:] == ["step:web/run:failed", "failed"]
    assert events[-2].data["log"][-1] == "stopped: build timed out"
    assert events[-1].data["reason"] == "build timed out after 0.5 s"
    assert events[-1].data["component"] == "web"


async def test_the_reaper_times_out_a_build_that_still_heartbeats(
    sessions: Sessions, store: ArtifactStore
) -> None:
    await queue(sessions, "b-8", [process("web", Path("/srv/web"))])
    async with sessions() as session, session.begin():
        await claims.claim(session, worker="stuck", limit=1)
    later = utcnow() + timedelta(seconds=901)
    async with sessions() as session, session.begin():
        await claims.heartbeat(session, worker="stuck", build_ids=["b-8"], now=later)
    reaper = runner(sessions, store, worker="reaper")
    assert await reaper.reap_once(later) == [("b-8", "timed out")]
    events = await emitted(sessions)
    assert events[-1].data["reason"] == "build timed out after 900 s"


async def test_a_cancelled_build_of_a_dead_worker_is_cancelled(
    sessions: Sessions, store: ArtifactStore
) -> None:
    await queue(sessions, "b-9", [process("web", Path("/srv/web"))])
    async with sessions() as session, session.begin():
        await claims.claim(session, worker="dead", limit=1)
    await on_build_commands(batch(cancel("b-9")), sessions)
    reaper = runner(sessions, store, worker="reaper")
    assert await reaper.reap_once(utcnow() + timedelta(seconds=31)) == [("b-9", "cancelled")]
    assert kinds(await emitted(sessions)) == ["started", "cancelled"]


async def test_the_loop_builds_what_is_queued_and_hands_back_on_stop(
    sessions: Sessions, store: ArtifactStore, tmp_path: Path
) -> None:
    sleeper = Sleeper()
    builders = {**default_builders(), "job": sleeper}
    r = runner(sessions, store, builders=builders, heartbeat_s=0.2)
    stop = asyncio.Event()
    loop = asyncio.create_task(r.run(stop))
    await queue(sessions, "b-10", [process("web", make_source(tmp_path))])
    await queue(sessions, "b-11", [{"name": "cron", "type": "job", "source": {"dir": "/x"}}])
    r.wake()
    await asyncio.wait_for(sleeper.started.wait(), 5)

    async def succeeded() -> bool:
        return (await task(sessions, "b-10")).status == "SUCCEEDED"

    await eventually(succeeded)
    first_beat = (await task(sessions, "b-11")).heartbeat_at

    async def beaten() -> bool:
        return (await task(sessions, "b-11")).heartbeat_at != first_beat

    await eventually(beaten)
    assert r.running
    stop.set()
    await asyncio.wait_for(loop, 10)
    assert not r.running and not sleeping()
    stored = await task(sessions, "b-11")
    assert (stored.status, stored.attempt, stored.worker) == ("QUEUED", 1, None)


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "CANCELLED"])
async def test_cancel_after_the_end_changes_nothing(
    sessions: Sessions, store: ArtifactStore, status: str
) -> None:
    await queue(sessions, "b-12", [process("web", Path("/srv/web"))])
    async with sessions() as session, session.begin():
        stored = await session.get(BuildTask, "b-12")
        assert stored is not None
        stored.status = status
    intake = await on_build_commands(batch(cancel("b-12")), sessions)
    assert intake.cancel_running == [] and intake.events == 0
    assert (await task(sessions, "b-12")).status == status


async def test_a_request_delivered_twice_builds_once(
    sessions: Sessions, store: ArtifactStore, tmp_path: Path
) -> None:
    event = requested("b-13", [process("web", make_source(tmp_path))])
    await on_build_commands(batch(event), sessions)
    await on_build_commands(batch(event), sessions)  # redelivered before the build ran
    r = runner(sessions, store)
    assert await r.claim_once() == ["b-13"]
    await r.join()
    await on_build_commands(batch(event), sessions)  # and again after it finished
    assert await r.claim_once() == []
    assert kinds(await emitted(sessions)) == [
        "started",
        "step:web/pack:running",
        "step:web/pack:succeeded",
        "succeeded",
    ]
