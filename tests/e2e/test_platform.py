"""The platform as `make up` runs it: readiness, health, metrics, restarts, one trace."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from libs.devstack.stack import SERVICES
from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth, query_until, unique

pytestmark = pytest.mark.e2e


async def test_gateway_ready_only_when_all_six_are(stack: RunningStack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{stack.stack.gateway_url}/readyz")
        assert response.status_code == 200
        checks = response.json()["checks"]
        for service in SERVICES:
            if service != "gateway":
                assert checks[service] is True
        assert checks["database"] and checks["kafka"]


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_has_health_readiness_and_metrics(
    stack: RunningStack, service: str
) -> None:
    base = stack.stack.url(service)
    async with httpx.AsyncClient(timeout=10) as client:
        health = await client.get(f"{base}/healthz")
        assert health.status_code == 200 and health.json()["service"] == service
        ready = await client.get(f"{base}/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        metrics = await client.get(f"{base}/metrics")
        assert metrics.status_code == 200
        assert "opsline_events_consumed_total" in metrics.text or service == "gateway"
        assert "# TYPE opsline_consumer_lag gauge" in metrics.text


@pytest.mark.parametrize(
    ("topic", "service"),
    [("build.events", "appmanager"), ("deploy.events", "appmanager")],
)
async def test_each_service_takes_its_topics_once_per_event_id(
    stack: RunningStack, topic: str, service: str
) -> None:
    from libs.events.envelope import CloudEvent
    from libs.events.publisher import Publisher

    event = CloudEvent.create(
        type="io.opsline.test.ping", source="tests", data={"n": 1}, subject=unique("subject")
    )
    publisher = Publisher(stack.stack.bootstrap, client_id="tests")
    await publisher.start()
    try:
        await publisher.publish(topic, event, key=event.subject)
        await publisher.publish(topic, event, key=event.subject)  # a redelivery
    finally:
        await publisher.stop()

    def taken() -> int:  # the consumer's own record of what it processed
        with sqlite3.connect(stack.home / f"{service}.db") as conn:
            return conn.execute(
                "SELECT COUNT(*) FROM processed_events WHERE consumer = ? AND event_id = ?",
                (service, event.id),
            ).fetchone()[0]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and taken() == 0:
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # time for the duplicate to be (not) taken
    assert taken() == 1


async def test_one_trace_follows_an_event_from_gateway_to_last_consumer(
    stack: RunningStack, span_sink
) -> None:
    sink, _ = span_sink
    name = unique("traced")
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "tests",
        "type": "io.opsline.metric.batch",
        "data": {"samples": [{"name": name, "value": 1, "ts": datetime.now(UTC).isoformat()}]},
    }
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{stack.stack.gateway_url}/v1/events",
            content=orjson.dumps(event),
            headers={
                **auth(stack),
                "content-type": "application/cloudevents+json",
                "traceparent": traceparent,
            },
        )
        assert response.status_code == 202
        await query_until(
            client,
            stack,
            [("name", name), ("start", "0"), ("end", "2100-01-01T00:00:00Z")],
            lambda s: len(s) == 1,
        )
    deadline = time.monotonic() + 30
    services: set[str] = set()
    while time.monotonic() < deadline:
        with sink.lock:
            services = {s["service"] for s in sink.spans if s["trace_id"] == trace_id}
        if {"gateway", "dataops-ingest", "aiops-detector"} <= services:
            break
        await asyncio.sleep(0.5)
    assert {"gateway", "dataops-ingest", "aiops-detector"} <= services, services
    with sink.lock:
        names = {s["name"] for s in sink.spans if s["trace_id"] == trace_id}
    assert {"POST /v1/events", "normalize", "consume metrics.points", "detect"} <= names, names


async def test_a_crashed_service_is_restarted_and_the_restart_is_logged(
    stack: RunningStack,
) -> None:
    old = stack.pid("build")
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                ready = (await client.get(f"{stack.stack.url('build')}/readyz")).status_code
            except httpx.HTTPError:
                ready = 0
            if ready == 200 and stack.pid("build") != old:
                break
            await asyncio.sleep(1)
    new = stack.pid("build")
    assert new != old
    log = stack.log("supervisord")
    assert "exited: build (terminated by SIGKILL; not expected)" in log
    assert f"spawned: 'build' with pid {new}" in log
