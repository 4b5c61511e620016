"""Runs last: the broker restarts with empty (in-memory) topics and the platform copes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth, query_until, unique

pytestmark = pytest.mark.e2e


async def test_events_flow_again_after_the_broker_restarts_empty(stack: RunningStack) -> None:
    out = stack.supervisorctl("restart", "broker")
    assert "broker: started" in out, out
    name = unique("after_restart")
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "tests",
        "type": "io.opsline.metric.batch",
        "data": {"samples": [{"name": name, "value": 42, "ts": datetime.now(UTC).isoformat()}]},
    }
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(60):  # the gateway's producer reconnects on its own
            response = await client.post(
                f"{stack.stack.gateway_url}/v1/events",
                content=orjson.dumps(event),
                headers={**auth(stack), "content-type": "application/cloudevents+json"},
            )
            if response.status_code == 202:
                break
        assert response.status_code == 202, response.text
        series = await query_until(
            client,
            stack,
            [("name", name), ("start", "0"), ("end", "2100-01-01T00:00:00Z")],
            lambda s: len(s) == 1,
            timeout=120,
        )
    assert series[0]["points"][0][1] == 42.0
