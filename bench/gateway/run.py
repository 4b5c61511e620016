"""bench/gateway: the gateway as the front door, beside what it stands in front of.

(a) `POST /v1/events`: batches of BATCH CloudEvents sent by CONCURRENCY clients at once;
    the gateway answers 202 once Kafka holds every event (acks=all). Beside it, the same
    events produced straight to the same broker's `ingest.raw` with aiokafka (acks=all,
    the gateway's producer settings), a batch being: send every event, await them all.
(b) `GET /v1/apps`: catalogue reads through the gateway (token, access policy, the
    appmanager asked) beside a bare FastAPI route returning the same JSON, both served by
    one uvicorn process, read by the same CONCURRENCY clients.

The bootstrap admin token is used: it is never rate limited, so the limiter does not cap
the figure (a token of its own gets 50 requests/s by default). The load comes from this
process, on the same cores as the stack, for both sides alike.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from bench.build.run import SPEC, make_sources
from bench.infra import free_port, stack_port_offset, wait_port
from libs.events.envelope import from_structured, to_kafka
from opsline.client import OpslineClient

BATCH = 100
CONCURRENCY = 8
BATCHES = 300
READS = 2000
APPS = 20
WARMUP = 20


def make_batches(count: int) -> list[list[dict[str, Any]]]:
    """Structured CloudEvents of a CI tool (an ops event each, ~300 bytes)."""
    return [
        [
            {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": f"bench/ci-{b % CONCURRENCY}",
                "type": "com.example.ci.step",
                "subject": "bench",
                "time": "2026-11-21T12:00:00Z",
                "datacontenttype": "application/json",
                "data": {"pipeline": b, "step": i, "status": "passed", "duration_ms": 1234},
            }
            for i in range(BATCH)
        ]
        for b in range(count)
    ]


async def timed(count: int, one: Callable[[int], Awaitable[None]]) -> dict[str, float]:
    """`count` calls of `one`, CONCURRENCY at a time: per second, p50 and p99 latency."""
    latencies: list[float] = []
    next_index = iter(range(count))

    async def worker() -> None:
        for index in next_index:
            started = time.perf_counter()
            await one(index)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "seconds": seconds,
        "per_s": count / seconds,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000,
    }


async def through_gateway(gateway: str, token: str, batches: list[list[dict[str, Any]]]) -> Any:
    bodies = [json.dumps(b).encode() for b in batches]
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/cloudevents-batch+json",
    }
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=gateway, limits=limits, timeout=60) as client:

        async def post(index: int) -> None:
            r = await client.post("/v1/events", content=bodies[index], headers=headers)
            if r.status_code != 202 or r.json()["rejected"]:
                raise RuntimeError(f"POST /v1/events: {r.status_code} {r.text[:300]}")

        await timed(WARMUP, post)
        return await timed(len(bodies) - WARMUP, lambda i: post(i + WARMUP))


async def straight_to_kafka(bootstrap: str, batches: list[list[dict[str, Any]]]) -> Any:
    records = [
        [(e["source"].encode(), *to_kafka(from_structured(e))[1:]) for e in b] for b in batches
    ]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=1,
        max_batch_size=1 << 20,
        max_request_size=16 << 20,
    )
    await producer.start()
    try:

        async def produce(index: int) -> None:
            futures = [
                await producer.send("ingest.raw", value, key=key, headers=headers)
                for key, value, headers in records[index]
            ]
            await asyncio.gather(*futures)

        await timed(WARMUP, produce)
        return await timed(len(records) - WARMUP, lambda i: produce(i + WARMUP))
    finally:
        await producer.stop()


async def reads(base: str, token: str, count: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as c:

        async def read(_: int) -> None:
            r = await c.get("/v1/apps")
            r.raise_for_status()

        await timed(WARMUP, read)
        return await timed(count, read)


def apply_apps(gateway: str, token: str, root: Path, apps: int) -> bytes:
    """The catalogue (bench-0 … bench-N) applied with opsline.client; GET /v1/apps's JSON."""
    with OpslineClient(gateway, token, env={}) as ops:
        for a in range(apps):
            ops.apply_app(SPEC.format(name=f"bench-{a}"), root / f"bench-{a}")
        return json.dumps(ops.list_apps()).encode()


def run(quick: bool = False) -> dict[str, Any]:
    from libs.testing.stack import start_stack

    batches = make_batches(BATCHES // 3 if quick else BATCHES)
    count = READS // 3 if quick else READS
    with tempfile.TemporaryDirectory(prefix="opsline-bench-gateway-") as tmp:
        root = Path(tmp) / "src"
        make_sources(root, APPS)
        running = start_stack(Path(tmp) / "home", port_offset=stack_port_offset())
        bare = None
        try:
            gateway, token = running.stack.gateway_url, running.admin_token
            # the same events, fresh ids for each side (consumers drop repeats by id)
            gw = asyncio.run(through_gateway(gateway, token, batches))
            kafka = asyncio.run(
                straight_to_kafka(running.stack.bootstrap, make_batches(len(batches)))
            )
            answer = apply_apps(gateway, token, root, APPS)
            (Path(tmp) / "apps.json").write_bytes(answer)
            port = free_port()
            bare = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.gateway.bare",
                    str(port),
                    str(Path(tmp) / "apps.json"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_port(port)
            catalogue = asyncio.run(reads(gateway, token, count))
            baseline = asyncio.run(reads(f"http://127.0.0.1:{port}", token, count))
        finally:
            if bare is not None:
                bare.terminate()
                bare.wait(timeout=30)
            running.stop()
    return {
        "batch": BATCH,
        "concurrency": CONCURRENCY,
        "events": {"batches": len(batches) - WARMUP, "gateway": gw, "kafka": kafka},
        "reads": {
            "apps": APPS,
            "bytes": len(answer),
            "requests": count,
            "gateway": catalogue,
            "bare": baseline,
        },
    }


def table(r: dict[str, Any]) -> str:
    e, c, n = r["events"], r["reads"], r["batch"]
    g, k, gr, b = e["gateway"], e["kafka"], c["gateway"], c["bare"]
    return "\n".join(
        [
            "| measure | through the gateway | baseline | ratio |",
            "|---|---|---|---|",
            f"| `POST /v1/events` batches of {n} per second | {g['per_s']:,.0f} | "
            f"{k['per_s']:,.0f} (aiokafka straight to Kafka) | {g['per_s'] / k['per_s']:.0%} |",
            f"| events per second | {g['per_s'] * n:,.0f} | {k['per_s'] * n:,.0f} | "
            f"{g['per_s'] / k['per_s']:.0%} |",
            f"| p50 per batch | {g['p50_ms']:.1f} ms | {k['p50_ms']:.1f} ms | "
            f"{g['p50_ms'] / k['p50_ms']:.1f}x |",
            f"| p99 per batch | {g['p99_ms']:.1f} ms | {k['p99_ms']:.1f} ms | "
            f"{g['p99_ms'] / k['p99_ms']:.1f}x |",
            f"| `GET /v1/apps` reads per second | {gr['per_s']:,.0f} | {b['per_s']:,.0f} "
            f"(a bare FastAPI route, same JSON) | {gr['per_s'] / b['per_s']:.0%} |",
            f"| p50 per read | {gr['p50_ms']:.1f} ms | {b['p50_ms']:.1f} ms | "
            f"{gr['p50_ms'] / b['p50_ms']:.1f}x |",
            f"| p99 per read | {gr['p99_ms']:.1f} ms | {b['p99_ms']:.1f} ms | "
            f"{gr['p99_ms'] / b['p99_ms']:.1f}x |",
        ]
    )


if __name__ == "__main__":
    result = run(quick="--quick" in sys.argv)
    print(result)
    print(table(result))
