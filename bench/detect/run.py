"""bench/detect: samples per second one detector worker scores (default detector, two
rules per series), beside a bare faust agent that only reads the same topic, in the same
run; and the state memory per series.

Both run as their own process against a private Tansu broker, one after the other, on
the same pre-loaded metrics.points (the bare agent first: the detector adds its score
batches to that topic). Each rate is timed from its first consumed batch, so consumer
group joins do not count.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bench.detect.worker import RULES
from bench.infra import Infra
from libs.events import topics as t
from libs.events.envelope import PROTOBUF, CloudEvent, to_kafka
from libs.events.topics import ensure_topics
from libs.telemetry.samples import encode_batch, parse_metric_batch
from services.aiops_detector import detectors
from services.aiops_detector.scoring import Anomaly, score_series

PARTITIONS = 4
BATCH = 500
AIM_STATE_BYTES = 16 * 1024


async def load(bootstrap: str, series: int, per_series: int) -> int:
    """Publish the samples as normalized metric batches, each series on its partition."""
    await ensure_topics(bootstrap, list(t.ALL_TOPICS), partitions=PARTITIONS)
    rng = random.Random(42)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    sent = 0
    try:
        by_part: dict[int, list[Any]] = {p: [] for p in range(PARTITIONS)}
        for step in range(per_series):
            raw = [
                {
                    "name": "bench_cpu",
                    "labels": {"app": f"app{i % 50}", "pod": f"pod{i}"},
                    "value": 50 + rng.gauss(0, 5),
                    "ts": 1_700_000_000_000 + step * 10_000,
                }
                for i in range(series)
            ]
            for sample in parse_metric_batch({"samples": raw}).samples:
                by_part[sample.series.hash32 % PARTITIONS].append(sample)
            for part, samples in by_part.items():
                while len(samples) >= BATCH or (step == per_series - 1 and samples):
                    chunk, samples[:] = samples[:BATCH], samples[BATCH:]
                    event = CloudEvent.create(
                        type=t.METRIC_POINTS,
                        source="bench",
                        datacontenttype=PROTOBUF,
                        data=encode_batch(chunk, source_event_id=f"bench-{sent}"),
                    )
                    key, value, headers = to_kafka(event)
                    await producer.send(
                        t.METRICS_POINTS, value, key=key, headers=headers, partition=part
                    )
                    sent += len(chunk)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def worker(kind: str, bootstrap: str, samples: int, home: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.detect.worker",
            kind,
            "--bootstrap",
            bootstrap,
            "--samples",
            str(samples),
            "--home",
            str(home),
            "--partitions",
            str(PARTITIONS),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    lines = [
        line[line.index("{") : line.rindex("}") + 1]
        for line in (out.stdout + out.stderr).splitlines()
        if '{"kind"' in line
    ]
    if not lines:
        raise RuntimeError(
            f"{kind} worker gave no figure:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        )
    return dict(orjson.loads(lines[-1]))


def state_memory(series: int, per_series: int) -> dict[str, float]:
    """Bytes of state per series: as stored and changelogged, and held in a memory store."""
    detector = detectors.create("zscore")

    rng = random.Random(1)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    table: dict[bytes, bytes] = {}
    for i in range(series):
        points = [(1 + k, 50 + rng.gauss(0, 5)) for k in range(per_series)]
        out = score_series(
            detector=detector,
            rules=RULES,
            anomaly=Anomaly(),
            name="bench_cpu",
            labels={"app": "a", "pod": f"pod{i}"},
            samples=points,
            state=None,
        )
        table[f"{i:016x}".encode()] = out.state
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename"))
    stored = sum(len(v) for v in table.values()) / series
    return {"stored_bytes": stored, "held_bytes": held / series}


def run(*, quick: bool = False) -> dict[str, Any]:
    series, per_series = (2_000, 25) if quick else (5_000, 40)
    with tempfile.TemporaryDirectory(prefix="bench-detect-") as tmp:
        home = Path(tmp)
        infra = Infra(home / "infra").start()
        try:
            total = asyncio.run(load(infra.bootstrap, series, per_series))
            bare = worker("bare", infra.bootstrap, total, home)
            detect = worker("detector", infra.bootstrap, total, home)
        finally:
            infra.stop()
    memory = state_memory(10_000, per_series)
    return {
        "series": series,
        "samples": total,
        "bare": bare,
        "detector": detect,
        "rss_per_series": max(0, detect["max_rss"] - bare["max_rss"]) / series,
        **memory,
    }


def table(r: dict[str, Any]) -> str:
    ratio = r["detector"]["rate"] / r["bare"]["rate"]
    kib = 1024
    return "\n".join(
        [
            "| measure | opsline detector worker | baseline: bare faust agent (same run) "
            "| ratio | aim |",
            "|---|---|---|---|---|",
            f"| samples/s, 1 worker | {r['detector']['rate']:,.0f} | {r['bare']['rate']:,.0f} "
            f"| {ratio:.0%} | — |",
            f"| state per series, stored and changelogged | {r['stored_bytes']:,.0f} B | — | — "
            f"| ≤ {AIM_STATE_BYTES // kib} KiB |",
            f"| state per series, held in the memory store | {r['held_bytes']:,.0f} B | — | — "
            f"| ≤ {AIM_STATE_BYTES // kib} KiB |",
            f"| peak RSS over the bare agent, per series | {r['rss_per_series'] / kib:,.1f} KiB "
            f"| {r['bare']['max_rss'] / kib / kib:,.0f} MiB peak | — "
            f"| ≤ {AIM_STATE_BYTES // kib} KiB |",
        ]
    )
