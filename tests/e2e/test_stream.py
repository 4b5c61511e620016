"""GET /v1/events/stream: live events from the *.events topics, filtered, over SSE."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson
import pytest

from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth

pytestmark = pytest.mark.e2e


def _ops_event(subject: str) -> dict:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "tests/ci",
        "type": "com.example.release.finished",
        "subject": subject,
        "data": {"version": "1.2.3"},
    }


async def test_stream_delivers_matching_events_live(stack: RunningStack) -> None:
    url = f"{stack.stack.gateway_url}/v1/events"
    subject = f"shop-{uuid.uuid4().hex[:6]}"
    other, ours = _ops_event(f"cart-{uuid.uuid4().hex[:6]}"), _ops_event(subject)
    async with httpx.AsyncClient(timeout=60) as client:
        async with client.stream(
            "GET",
            f"{url}/stream",
            headers=auth(stack),
            params={"type": "io.opsline.ops.", "subject": subject},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            assert await anext(lines) == ": connected"
            for event in (other, ours):
                posted = await client.post(
                    url,
                    content=orjson.dumps(event),
                    headers={**auth(stack), "content-type": "application/cloudevents+json"},
                )
                assert posted.status_code == 202

            async def first_frame() -> dict[str, str]:
                frame: dict[str, str] = {}
                async for line in lines:
                    if line.startswith(":"):
                        continue
                    if not line:
                        if frame:
                            return frame
                        continue
                    key, _, value = line.partition(": ")
                    frame[key] = value
                raise AssertionError("stream ended")

            frame = await asyncio.wait_for(first_frame(), 60)
    assert frame["id"] == ours["id"]  # the other subject was filtered out
    assert frame["event"] == "io.opsline.ops.event"
    data = orjson.loads(frame["data"])
    assert data["subject"] == subject
    assert data["data"]["type"] == "com.example.release.finished"
    assert data["data"]["data"] == {"version": "1.2.3"}


async def test_stream_needs_a_token(stack: RunningStack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{stack.stack.gateway_url}/v1/events/stream")
    assert response.status_code == 401
