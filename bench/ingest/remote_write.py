"""bench/ingest (d): Prometheus remote_write end to end into Elasticsearch, beside a bare bulk.

Against a running embedded stack: remote_write requests of 2,000 samples (one per series,
as Prometheus sends a scrape) are POSTed to the gateway by a few concurrent senders (as
Prometheus's shards do), and the clock stops when Elasticsearch holds every sample. The
baseline indexes the same documents with a bare `async_bulk` into the same store.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import cramjam
import httpx
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk

from bench.infra import stack_port_offset
from libs.schemas.prometheus.remote_pb2 import WriteRequest
from libs.telemetry import remote_write
from services.dataops_ingest import store

SAMPLES_PER_REQUEST = 2000  # Prometheus's max_samples_per_send
SENDERS = 4  # concurrent remote_write shards
HEADERS = {
    "content-type": remote_write.CONTENT_TYPE,
    "content-encoding": remote_write.ENCODING,
    "x-prometheus-remote-write-version": remote_write.VERSION,
}


def write_requests(name: str, n_requests: int, *, start_ms: int) -> list[WriteRequest]:
    """One sample per series per request: each request is one scrape of 2,000 series."""
    out = []
    for r in range(n_requests):
        request = WriteRequest()
        for k in range(SAMPLES_PER_REQUEST):
            ts = request.timeseries.add()
            ts.labels.add(name="__name__", value=name)
            ts.labels.add(name="instance", value=f"host-{k % 40}:9100")
            ts.labels.add(name="job", value="bench")
            ts.labels.add(name="series", value=str(k))
            ts.samples.add(value=float((r * 31 + k) % 997), timestamp=start_ms + r * 1000)
        out.append(request)
    return out


def documents(requests: list[WriteRequest], prefix: str) -> list[dict[str, Any]]:
    """The documents the sink writes for these requests (same ids, same fields)."""
    actions = []
    for request in requests:
        for s in remote_write.to_samples(request).samples:
            actions.append(
                {
                    "_index": store.index_for(prefix, "metrics", s.ts_ms),
                    "_id": f"{s.series_id}:{s.ts_ms}",
                    "_source": {
                        "series_id": s.series_id,
                        "name": s.name,
                        "labels": s.labels,
                        "ts": s.ts_ms,
                        "value": s.value,
                    },
                }
            )
    return actions


async def _count(es: AsyncElasticsearch, index: str, name: str, *, refresh: bool = True) -> int:
    if refresh:
        await es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    response = await es.count(
        index=index, query={"term": {"name": name}}, ignore_unavailable=True, allow_no_indices=True
    )
    return int(response["count"])


async def _send_all(gateway: str, token: str, bodies: list[bytes]) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {**HEADERS, "Authorization": f"Bearer {token}"}

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            while True:  # as Prometheus does: retry a 5xx, never drop it
                response = await client.post(
                    f"{gateway}/v1/ingest/prometheus/write", content=body, headers=headers
                )
                if response.status_code == 204:
                    break
                if response.status_code < 500:
                    raise RuntimeError(f"remote_write refused: {response.text}")
                await asyncio.sleep(0.1)

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(SENDERS)))


async def measure(gateway: str, token: str, es_url: str, n_requests: int) -> dict[str, float]:
    name = f"bench_rw_{uuid.uuid4().hex[:8]}"
    requests = write_requests(name, n_requests, start_ms=int(time.time() * 1000) - 3_600_000)
    bodies = [bytes(cramjam.snappy.compress_raw(r.SerializeToString())) for r in requests]
    total = n_requests * SAMPLES_PER_REQUEST
    es = AsyncElasticsearch(es_url, request_timeout=120)
    try:
        await store.install_templates(es, "benchrw")
        actions = documents(requests, "benchrw")
        started = time.perf_counter()
        await async_bulk(
            es, actions, chunk_size=store.BULK_CHUNK_DOCS, max_chunk_bytes=64 << 20, refresh=False
        )
        baseline = time.perf_counter() - started
        if await _count(es, "benchrw-metrics-*", name) != total:
            raise RuntimeError("the baseline bulk did not store every document")
        # Each side starts from an empty store: the baseline's documents would slow the next.
        await es.indices.delete(index=",".join(sorted({a["_index"] for a in actions})))
        load_before = os.getloadavg()[0]

        started = time.perf_counter()
        await _send_all(gateway, token, bodies)
        accepted = time.perf_counter() - started
        deadline = time.monotonic() + 900
        # No forced refresh while waiting: it would slow the store down for this side only
        # (searches see new documents within the refresh interval, 1 s on Elasticsearch).
        while await _count(es, "opsline-metrics-*", name, refresh=False) < total:
            if time.monotonic() > deadline:
                raise RuntimeError("remote_write samples never all reached Elasticsearch")
            await asyncio.sleep(0.25)
        end_to_end = time.perf_counter() - started
        if await _count(es, "opsline-metrics-*", name) != total:
            raise RuntimeError("more remote_write samples stored than sent")
    finally:
        await es.close()
    return {
        "samples": total,
        "requests": n_requests,
        "request_bytes": sum(len(b) for b in bodies) / n_requests,
        "accept_samples_per_s": total / accepted,
        "end_to_end_samples_per_s": total / end_to_end,
        "baseline_docs_per_s": total / baseline,
        "load_average": max(load_before, os.getloadavg()[0]),
    }


def run(quick: bool = False) -> dict[str, float]:
    """Start an embedded stack of its own, measure, stop it."""
    from libs.testing.stack import start_stack

    with tempfile.TemporaryDirectory(prefix="opsline-bench-rw-") as tmp:
        running = start_stack(Path(tmp) / "home", port_offset=stack_port_offset())
        try:
            return asyncio.run(
                measure(
                    running.stack.gateway_url,
                    running.admin_token,
                    running.stack.elasticsearch_url,
                    25 if quick else 50,
                )
            )
        finally:
            running.stop()


def row(r: dict[str, float]) -> str:
    ratio = r["end_to_end_samples_per_s"] / r["baseline_docs_per_s"]
    return (
        f"| (d) Prometheus remote_write → gateway → Kafka → normalizer → Elasticsearch, "
        f"{r['samples']:,.0f} samples in {r['requests']:.0f} requests of "
        f"{SAMPLES_PER_REQUEST:,} ({r['request_bytes'] / 1024:,.0f} KiB snappy), "
        f"{SENDERS} senders | {r['end_to_end_samples_per_s']:,.0f} samples/s stored "
        f"({r['accept_samples_per_s']:,.0f}/s answered 204) | "
        f"{r['baseline_docs_per_s']:,.0f} docs/s (bare async_bulk, same store) | "
        f"{ratio:.0%} | ≥ 50% |"
        + (
            f"\n\n(d) ran with a 1-minute load average of {r['load_average']:.1f} on "
            f"{os.cpu_count()} cores: the stack's eight programs share them with the senders."
            if "load_average" in r
            else ""
        )
    )
