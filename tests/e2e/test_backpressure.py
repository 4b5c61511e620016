"""Elasticsearch down or overloaded: the sink pauses without committing, nothing is lost,
and the backlog drains when the store is back.

The first test stops the session stack's store through supervisord and starts it again
(same data folder, same port) in a `finally`, because every later test needs it. The
second runs a sink worker of its own, on the session's broker, behind a proxy that
answers 429 as an overloaded Elasticsearch does.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cramjam
import httpx
import orjson
import pytest
from elasticsearch import AsyncElasticsearch

from libs.events import topics as t
from libs.events.envelope import PROTOBUF, CloudEvent
from libs.events.publisher import Publisher
from libs.events.worker import Worker
from libs.schemas.prometheus.remote_pb2 import WriteRequest
from libs.telemetry.samples import encode_batch, parse_metric_batch
from libs.testing.stack import RunningStack
from services.dataops_ingest import handlers
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


_SET_HERE = {
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "x-elastic-product",
    "content-encoding",  # httpx has already decoded the body
}


class _Overloaded:
    """A proxy in front of the real store that answers bulk requests as an overloaded
    Elasticsearch does (429 for the whole request, then 429 for every item) until healed."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "request"  # "request", "items", then "healed"
        self.refused = {"request": 0, "items": 0}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path.split("?")[0].endswith("/_bulk") and proxy.mode != "healed":
                    proxy.refused[proxy.mode] += 1
                    return self._refuse(body)
                skip = {"host", "content-length", "transfer-encoding", "connection"}
                upstream = httpx.request(
                    self.command,
                    proxy.upstream + self.path,
                    content=body,
                    headers={k: v for k, v in self.headers.items() if k.lower() not in skip},
                    timeout=60,
                )
                self._answer(upstream.status_code, upstream.content, upstream.headers)

            def _refuse(self, body: bytes) -> None:
                if proxy.mode == "request":
                    error = {"type": "es_rejected_execution_exception", "reason": "overloaded"}
                    payload = {"error": error, "status": 429}
                    return self._answer(429, orjson.dumps(payload), {})
                actions = [orjson.loads(line) for line in body.splitlines()[::2] if line]
                items = [
                    {
                        op: {
                            "_index": meta["_index"],
                            "_id": meta["_id"],
                            "status": 429,
                            "error": {"type": "es_rejected_execution_exception"},
                        }
                    }
                    for action in actions
                    for op, meta in action.items()
                ]
                payload = {"took": 1, "errors": True, "items": items}
                return self._answer(200, orjson.dumps(payload), {})

            def _answer(self, status: int, content: bytes, headers: Any) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in _SET_HERE:
                        self.send_header(key, value)
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


async def _until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} after {timeout}s")


async def test_the_sink_holds_its_offsets_while_elasticsearch_answers_429(
    stack: RunningStack,
) -> None:
    """A sink worker of the test's own, on the session's broker and store, behind the proxy."""
    topic = unique("bp.points")
    await t.ensure_topics(stack.stack.bootstrap, [topic], partitions=2)
    now = int(time.time() * 1000)
    events = []
    for e in range(6):
        parsed = parse_metric_batch(
            {
                "samples": [
                    {
                        "name": topic.replace(".", "_"),
                        "labels": {"pod": f"p{i}"},
                        "value": i,
                        "ts": now - 60_000 + e * 1000,
                    }
                    for i in range(100)
                ]
            }
        )
        events.append(
            CloudEvent.create(
                type=t.METRIC_POINTS,
                source="tests/backpressure",
                datacontenttype=PROTOBUF,
                data=encode_batch(parsed.samples, source_event_id=str(e)),
            )
        )
    publisher = Publisher(stack.stack.bootstrap, client_id="bp-test")
    await publisher.start()
    proxy = _Overloaded(stack.stack.elasticsearch_url)
    es = AsyncElasticsearch(proxy.url, request_timeout=30)
    prefix = unique("bp").lower()
    worker = Worker(
        name="es-sink",
        service="tests",
        bootstrap=stack.stack.bootstrap,
        group_id=unique("bp-sink"),
        topics=[topic],
        handler=functools.partial(handlers.on_normalized, es=es, prefix=prefix),
        publisher=publisher,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        for event in events:
            await publisher.publish(topic, event)
        await _until(lambda: proxy.refused["request"] >= 2, 60, "no bulk request reached the store")
        assert worker.processed == 0  # nothing committed while the store refuses
        proxy.mode = "items"
        await _until(lambda: proxy.refused["items"] >= 2, 60, "no bulk retried")
        assert worker.processed == 0
        proxy.mode = "healed"
        await _until(lambda: worker.processed == len(events), 60, "the backlog never drained")
        direct = AsyncElasticsearch(stack.stack.elasticsearch_url)
        try:
            await direct.indices.refresh(index=f"{prefix}-metrics-*")
            count = await direct.count(index=f"{prefix}-metrics-*")
        finally:
            await direct.close()
        assert count["count"] == 600
    finally:
        stop.set()
        await task
        await es.close()
        await publisher.stop()
        proxy.close()
