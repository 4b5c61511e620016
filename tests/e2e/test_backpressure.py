"""Elasticsearch down: the sink pauses without committing, nothing is lost, the backlog drains.

The test stops the session stack's store through supervisord and starts it again (same
data folder, same port) in a `finally`, because every later test needs it.
"""

from __future__ import annotations

import time
import uuid

import cramjam
import httpx
import orjson
import pytest

from libs.schemas.prometheus.remote_pb2 import WriteRequest
from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth, query_until, unique

pytestmark = pytest.mark.e2e

WINDOW = [("start", "2000-01-01T00:00:00Z"), ("end", "2100-01-01T00:00:00Z")]
SERIES = 50
PER_SERIES = 40  # N = 2,000 samples while the store is down, half by each door


def _remote_write(name: str, start_ms: int) -> bytes:
    request = WriteRequest()
    for k in range(SERIES):
        ts = request.timeseries.add()
        ts.labels.add(name="__name__", value=name)
        ts.labels.add(name="door", value="remote_write")
        ts.labels.add(name="pod", value=f"p{k}")
        for i in range(PER_SERIES // 2):
            ts.samples.add(value=float(i), timestamp=start_ms + i)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def _cloudevent(name: str, start_ms: int) -> bytes:
    samples = [
        {"name": name, "labels": {"door": "events", "pod": f"p{k}"}, "value": i, "ts": start_ms + i}
        for k in range(SERIES)
        for i in range(PER_SERIES // 2)
    ]
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "tests/backpressure",
            "type": "io.opsline.metric.batch",
            "data": {"samples": samples},
        }
    )


def _store_answers(stack: RunningStack) -> bool:
    try:
        return httpx.get(stack.stack.elasticsearch_url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} after {timeout}s")


def _points(series: list[dict]) -> int:  # type: ignore[type-arg]
    return sum(len(s["points"]) for s in series)


async def test_samples_sent_while_elasticsearch_is_down_are_all_there_after(
    stack: RunningStack,
) -> None:
    name = unique("backpressure")
    start_ms = int(time.time() * 1000) - 600_000
    async with httpx.AsyncClient(timeout=30) as client:
        # Something already stored before the outage must survive it too.
        before = {"name": name, "labels": {"door": "before"}, "value": 7, "ts": start_ms - 1}
        response = await client.post(
            f"{stack.stack.gateway_url}/v1/events",
            content=orjson.dumps(
                {
                    "specversion": "1.0",
                    "id": str(uuid.uuid4()),
                    "source": "tests/backpressure",
                    "type": "io.opsline.metric.batch",
                    "data": {"samples": [before]},
                }
            ),
            headers={**auth(stack), "content-type": "application/cloudevents+json"},
        )
        assert response.status_code == 202, response.text
        await query_until(client, stack, [("name", name), *WINDOW], lambda s: _points(s) == 1)
        sink_log_before = len(stack.log("dataops-ingest"))

        stopped = stack.supervisorctl("stop", "store")
        try:
            assert "stopped" in stopped, stopped
            assert not _store_answers(stack)
            rw = await client.post(
                f"{stack.stack.gateway_url}/v1/ingest/prometheus/write",
                content=_remote_write(name, start_ms),
                headers={
                    **auth(stack),
                    "content-type": "application/x-protobuf",
                    "content-encoding": "snappy",
                    "x-prometheus-remote-write-version": "0.1.0",
                },
            )
            assert rw.status_code == 204, rw.text  # Kafka has it; the store is not needed
            ce = await client.post(
                f"{stack.stack.gateway_url}/v1/events",
                content=_cloudevent(name, start_ms),
                headers={**auth(stack), "content-type": "application/cloudevents+json"},
            )
            assert ce.status_code == 202, ce.text
            # The sink tried, found the store gone, and is waiting rather than moving on.
            _wait(
                lambda: (
                    "elasticsearch unavailable" in stack.log("dataops-ingest")[sink_log_before:]
                ),
                60,
                "the sink never reported the store unavailable",
            )
            down = await client.get(
                f"{stack.stack.gateway_url}/v1/metrics/query",
                params=[("name", name), *WINDOW],
                headers=auth(stack),
            )
            assert down.status_code == 503
        finally:
            started = stack.supervisorctl("start", "store")
            _wait(lambda: _store_answers(stack), 60, f"the store did not come back: {started}")

        series = await query_until(
            client,
            stack,
            [("name", name), *WINDOW],
            lambda s: _points(s) == 1 + 2 * SERIES * (PER_SERIES // 2),
            timeout=120,
        )
    by_door: dict[str, int] = {}
    for s in series:
        by_door[s["labels"]["door"]] = by_door.get(s["labels"]["door"], 0) + len(s["points"])
    assert by_door == {"before": 1, "remote_write": 1000, "events": 1000}
    pod = next(s for s in series if s["labels"] == {"door": "remote_write", "pod": "p7"})
    assert [p[1] for p in pod["points"]] == [float(i) for i in range(PER_SERIES // 2)]
