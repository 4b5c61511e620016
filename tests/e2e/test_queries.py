"""The query routes through the gateway: aggregated metric ranges, series, log search and
an app's timeline (a build, the catalogue change and an external change event), bad
input refused with reasons, and 503 while the store is down."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth, unique

pytestmark = pytest.mark.e2e

T0 = 1_795_000_020_000  # a multiple of 60 s, 2026-11-18T…Z
SPEC = """\
apiVersion: opsline.io/v1
kind: App
meta: {{name: {name}, team: e2e}}
components:
  - name: web
    type: process
    source: {{dir: ./web}}
"""


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


def _event(type_: str, data: object, **attrs: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "tests/e2e/queries",
        "type": type_,
        "data": data,
        **attrs,
    }


async def _post(client: httpx.AsyncClient, stack: RunningStack, events: list[dict]) -> None:
    r = await client.post(
        f"{stack.stack.gateway_url}/v1/events",
        json=events,
        headers={**auth(stack), "content-type": "application/cloudevents-batch+json"},
    )
    assert r.status_code == 202, r.text


async def _get_until(
    client: httpx.AsyncClient,
    stack: RunningStack,
    path: str,
    params: list[tuple[str, str]],
    done: Any,
    timeout: float = 60,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = await client.get(f"{stack.stack.gateway_url}{path}", params=params, headers=auth(stack))
        assert r.status_code == 200, r.text
        body = r.json()
        if done(body):
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"{path} {params} never satisfied; last answer {body}")


async def test_aggregated_metric_query_and_series(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    name = unique("q_requests_total")
    samples = [
        {
            "name": name,
            "labels": {"pod": pod, "app": "shop"},
            "value": float(i * k),
            "ts": T0 + i * 15_000,
        }
        for i in range(8)
        for pod, k in (("a", 1), ("b", 10))
    ]
    await _post(client, stack, [_event("io.opsline.metric.batch", {"samples": samples})])
    window = [("start", str(T0)), ("end", str(T0 + 119_999))]
    raw = await _get_until(
        client,
        stack,
        "/v1/metrics/query",
        [("name", name), *window],
        lambda b: sum(len(s["points"]) for s in b["series"]) == 16,
    )
    assert "step" not in raw  # the raw answer keeps its shape
    body = await _get_until(
        client,
        stack,
        "/v1/metrics/query",
        [("name", name), ("step", "1m"), ("agg", "rate"), ("match", "pod!=b"), *window],
        lambda b: bool(b["series"]),
    )
    assert (body["step"], body["agg"]) == (60, "rate")
    assert [p[1] for p in body["series"][0]["points"]] == [4 / 60]
    body = await _get_until(
        client,
        stack,
        "/v1/metrics/query",
        [("name", name), ("step", "60s"), ("agg", "max"), ("match", "pod=~a|b"), *window],
        lambda b: len(b["series"]) == 2,
    )
    maxima = {s["labels"]["pod"]: [p[1] for p in s["points"]] for s in body["series"]}
    assert maxima == {"a": [3.0, 7.0], "b": [30.0, 70.0]}
    series = await _get_until(
        client,
        stack,
        "/v1/metrics/series",
        [("match", "app=shop"), ("name", name)],
        lambda b: len(b["series"]) == 2,
    )
    assert {s["labels"]["pod"] for s in series["series"]} == {"a", "b"}
    for params, reason in [
        ([("step", "10ms"), ("agg", "avg")], "step"),
        ([("step", "1m"), ("agg", "median")], "agg 'median'"),
        ([("match", "pod~a")], "expected LABEL=VALUE"),
        (
            [("step", "1s"), ("agg", "avg"), ("start", "0"), ("end", "99999999999")],
            "step too small",
        ),
    ]:
        query = dict([("name", name), *window, *params])
        r = await client.get(
            f"{stack.stack.gateway_url}/v1/metrics/query", params=query, headers=auth(stack)
        )
        assert r.status_code == 422 and reason in r.text, (params, r.text)


async def test_log_search(stack: RunningStack, client: httpx.AsyncClient) -> None:
    marker = uuid.uuid4().hex[:12]
    records = [
        {"ts": T0 + i, "level": lvl, "message": f"{marker} {msg}", "labels": {"app": app}}
        for i, (lvl, msg, app) in enumerate(
            [
                ("error", "payment failed", "shop"),
                ("info", "payment ok", "shop"),
                ("info", "cart ready", "cart"),
            ]
        )
    ]
    await _post(client, stack, [_event("io.opsline.log.batch", {"records": records})])
    found = await _get_until(
        client, stack, "/v1/logs/search", [("q", marker)], lambda b: b["total"] == 3
    )
    assert [r["message"].split(" ", 1)[1] for r in found["records"]] == [
        "cart ready",
        "payment ok",
        "payment failed",
    ]
    page = await _get_until(
        client,
        stack,
        "/v1/logs/search",
        [("q", f"{marker} AND payment"), ("match", "app=shop"), ("limit", "1"), ("offset", "1")],
        lambda b: b["total"] == 2,
    )
    assert [r["level"] for r in page["records"]] == ["error"]
    r = await client.get(
        f"{stack.stack.gateway_url}/v1/logs/search",
        params={"q": "payment AND ("},
        headers=auth(stack),
    )
    assert r.status_code == 422 and "refused the query" in r.text


async def test_timeline_of_an_app(
    stack: RunningStack, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    app = unique("tl").replace("_", "-")
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "main.py").write_text("print('web')\n")
    gateway = stack.stack.gateway_url
    r = await client.post(
        f"{gateway}/v1/apps:apply",
        content=SPEC.format(name=app).encode(),
        headers={
            **auth(stack),
            "content-type": "application/yaml",
            "x-opsline-base-dir": str(tmp_path),
        },
    )
    assert r.status_code in (200, 201), r.text
    r = await client.post(f"{gateway}/v1/apps/{app}/builds", json={}, headers=auth(stack))
    assert r.status_code == 202, r.text
    await _post(
        client,
        stack,
        [_event("com.example.release", {"app": app, "summary": "feature flag on"})],
    )
    body = await _get_until(
        client,
        stack,
        f"/v1/apps/{app}/timeline",
        [],
        lambda b: (
            {"build", "app", "ops"} <= {e["kind"] for e in b["events"]}
            and any(e["type"] == "io.opsline.build.succeeded" for e in b["events"])
        ),
        timeout=90,
    )
    events = body["events"]
    stamps = [e["ts"] for e in events]
    assert stamps == sorted(stamps, reverse=True)
    assert events[-1]["type"] == "io.opsline.app.created"
    assert any(e["summary"] == "feature flag on" for e in events)
    builds = await _get_until(
        client,
        stack,
        f"/v1/apps/{app}/timeline",
        [("kind", "build")],
        lambda b: bool(b["events"]),
    )
    assert {e["kind"] for e in builds["events"]} == {"build"}
    # the catalogue's /v1/apps routes still answer
    assert (await client.get(f"{gateway}/v1/apps/{app}", headers=auth(stack))).status_code == 200
    r = await client.get(
        f"{gateway}/v1/apps/{app}/timeline", params={"kind": "x"}, headers=auth(stack)
    )
    assert r.status_code == 422


async def test_queries_are_503_while_the_store_is_down(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    gateway = stack.stack.gateway_url
    stopped = stack.supervisorctl("stop", "store")
    try:
        assert "stopped" in stopped, stopped
        # the store's server process may outlive supervisord's stop for a moment
        deadline = time.monotonic() + 30
        while _store_answers(stack) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert not _store_answers(stack), stack.supervisorctl("status")
        for path, params in [
            ("/v1/logs/search", {"q": "x"}),
            ("/v1/apps/shop/timeline", {}),
            ("/v1/metrics/series", {"match": "app=shop"}),
            (
                "/v1/metrics/query",
                {"name": "up", "start": "0", "end": "1", "step": "1m", "agg": "avg"},
            ),
        ]:
            r = await client.get(f"{gateway}{path}", params=params, headers=auth(stack))
            assert r.status_code == 503 and "elasticsearch unavailable" in r.text, (path, r.text)
    finally:
        stack.supervisorctl("start", "store")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _store_answers(stack):
            await asyncio.sleep(0.5)


def _store_answers(stack: RunningStack) -> bool:
    try:
        return httpx.get(stack.stack.elasticsearch_url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
