"""The live stream: a ring of recent events for Last-Event-ID, filters by type, subject and
app, and only events of apps the caller may read (the e2e test runs it over real SSE)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request

from libs.events.envelope import CloudEvent
from services.gateway import access
from services.gateway import stream as live
from services.gateway.deps import Caller
from tests.gateway.conftest import Gateway


def _event(n: int, type_: str = "io.opsline.build.started", **data: Any) -> CloudEvent:
    return CloudEvent.create(type=type_, source="t", subject=f"s{n}", id=f"e{n}", data=data)


def test_resume_after_a_held_id_replays_what_followed() -> None:
    hub = live.EventHub(ring_size=10)
    for n in range(5):
        hub.publish(_event(n))
    _, resume = hub.subscribe((), None, "e2")
    assert [e.id for e in resume.backlog] == ["e3", "e4"] and not resume.missed
    _, latest = hub.subscribe((), None, "e4")
    assert latest.backlog == [] and not latest.missed
    _, typed = hub.subscribe(("io.opsline.deploy.",), None, "e0")
    assert typed.backlog == []


def test_an_id_older_than_the_ring_is_reported_as_missed() -> None:
    hub = live.EventHub(ring_size=3)
    for n in range(6):
        hub.publish(_event(n))
    _, resume = hub.subscribe((), None, "e1")
    assert resume.missed
    assert [e.id for e in resume.backlog] == ["e3", "e4", "e5"]


async def test_stream_frames_have_ids_and_skip_what_is_not_allowed() -> None:
    hub = live.EventHub(ring_size=10)
    hub.publish(_event(1, app="shop"))
    hub.publish(_event(2, app="bank"))

    async def allowed(event: CloudEvent) -> bool:
        return event.json().get("app") == "shop"

    sub, resume = hub.subscribe((), None, "e0")
    frames = live.stream(hub, sub, allowed=allowed, resume=resume, last_event_id="e0")
    got = [await anext(frames) for _ in range(3)]
    assert got[0] == b": connected\n\n"
    assert got[1].startswith(b"event: missed\ndata: ")  # e0 was never held
    assert orjson.loads(got[1].split(b"data: ", 1)[1])["last_event_id"] == "e0"
    assert got[2].startswith(b"id: e1\nevent: io.opsline.build.started\n")
    hub.publish(_event(3, app="bank"))
    hub.publish(_event(4, app="shop"))
    assert (await asyncio.wait_for(anext(frames), 2)).startswith(b"id: e4\n")
    await frames.aclose()
    assert sub not in hub._subscriptions


def test_the_app_of_an_event_by_topic_convention() -> None:
    assert live.app_of(_event(1, app="shop")) == "shop"
    assert live.app_of(_event(1, "io.opsline.alert.raised", labels={"app": "shop"})) == "shop"
    ops = _event(1, "io.opsline.ops.event", type="com.ci.done", data={"app": "shop"})
    assert live.app_of(ops) == "shop"
    drift = _event(1, "io.opsline.deploy.drift_detected", instance="shop-dev")
    assert live.app_of(drift) == "" and live.instance_of(drift) == "shop-dev"
    assert live.app_of(_event(1, "io.opsline.ops.event", data="x")) == ""


async def test_the_stream_shows_a_viewer_only_their_teams_events(gateway: Gateway) -> None:
    gateway.upstream.apps.update({"shop": "a", "bank": "b"})
    gateway.upstream.instances.update({"shop-dev": "shop", "bank-dev": "bank"})
    request = Request({"type": "http", "app": gateway.app, "headers": []})
    viewer = Caller(7, "t", frozenset({"read"}), user="v", user_id=7, roles={"a": "viewer"})
    admin = Caller(1, "admin", frozenset({"read"}), user="admin", platform_admin=True)
    events = [
        _event(1, app="shop"),
        _event(2, app="bank"),
        _event(3, "io.opsline.deploy.drift_detected", instance="shop-dev"),
        _event(4, "io.opsline.deploy.drift_detected", instance="bank-dev"),
        _event(5, "io.opsline.ops.event", type="x", data={"v": 1}),  # of no app
    ]

    async def seen(caller: Caller, app: str | None = None) -> list[str]:
        allowed = access.event_filter(request, caller, app)
        return [e.id for e in events if await allowed(e)]

    assert await seen(viewer) == ["e1", "e3"]
    assert await seen(viewer, "bank") == []
    assert await seen(admin) == ["e1", "e2", "e3", "e4", "e5"]
    assert await seen(admin, "bank") == ["e2", "e4"]


async def test_made_up_apps_cost_one_lookup_per_stream_not_one_per_event(gateway: Gateway) -> None:
    request = Request({"type": "http", "app": gateway.app, "headers": []})
    viewer = Caller(7, "t", frozenset({"read"}), user="v", user_id=7, roles={"a": "viewer"})
    allowed = access.event_filter(request, viewer, None)
    for n in range(20):
        assert not await allowed(_event(n, "io.opsline.ops.event", type="x", data={"app": "nope"}))
    assert gateway.upstream.calls == [("GET", "appmanager/apps/nope")]
    nobody = Caller(8, "t", frozenset({"read"}), user="n", user_id=8)
    assert not await access.event_filter(request, nobody, None)(_event(1, app="shop"))
    assert len(gateway.upstream.calls) == 1  # a member of no team needs no lookup at all
