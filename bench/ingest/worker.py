"""One benchmark worker process: the real normalizer, or a bare aiokafka passthrough.

Prints `ASSIGNED n` whenever the number of partitions it owns changes, then
`RESULT {json}` after it has been idle for --idle seconds once it has seen data.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import sys
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from libs.events import topics as t
from libs.events.publisher import Publisher
from libs.events.worker import Batch, Worker
from services.dataops_ingest import handlers


class _Stats:
    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0
        self.records = 0


async def run_normalizer(args: argparse.Namespace) -> dict:
    publisher = Publisher(args.bootstrap, client_id="bench-normalizer")
    await publisher.start()
    stats = _Stats()
    inner = functools.partial(handlers.on_raw_events, partitions=args.partitions)

    async def handler(batch: Batch) -> None:
        if stats.first is None:
            stats.first = time.time()
        await inner(batch)

    worker = Worker(
        name="normalizer",
        service="bench",
        bootstrap=args.bootstrap,
        group_id=args.group,
        topics=[args.topic],
        handler=handler,
        publisher=publisher,
        max_records=500,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    watcher = asyncio.create_task(_watch_assignment(worker.assignment))
    processed = 0
    idle_since = time.time()
    while True:
        await asyncio.sleep(0.05)
        if worker.processed != processed:
            processed = worker.processed
            stats.last = time.time()
            idle_since = stats.last
        elif stats.first is not None and time.time() - max(idle_since, stats.first) > args.idle:
            break
    watcher.cancel()
    stop.set()
    await task
    await publisher.stop()
    return {"records": processed, "first": stats.first, "last": stats.last}


async def _watch_assignment(current: Callable[[], set[object]]) -> None:
    last = -1
    while True:
        n = len(current())
        if n != last:
            print(f"ASSIGNED {n}", flush=True)
            last = n
        await asyncio.sleep(0.1)


async def run_passthrough(args: argparse.Namespace) -> dict:
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        max_request_size=16 << 20,
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=32 << 20,
    )
    await producer.start()
    await consumer.start()
    consumer.subscribe([args.topic])
    watcher = asyncio.create_task(_watch_assignment(consumer.assignment))
    stats = _Stats()
    idle_since = time.time()
    while True:
        data = await consumer.getmany(timeout_ms=50, max_records=500)
        if not data:
            if stats.first is not None and time.time() - idle_since > args.idle:
                break
            continue
        if stats.first is None:
            stats.first = time.time()
        futures = []
        for messages in data.values():
            for m in messages:
                futures.append(
                    await producer.send(args.out, m.value, key=m.key, headers=list(m.headers))
                )
        await asyncio.gather(*futures)
        await consumer.commit({tp: ms[-1].offset + 1 for tp, ms in data.items()})
        stats.records += sum(len(ms) for ms in data.values())
        stats.last = idle_since = time.time()
    watcher.cancel()
    await consumer.stop()
    await producer.stop()
    return {"records": stats.records, "first": stats.first, "last": stats.last}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["normalize", "passthrough"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", default=t.INGEST_RAW)
    parser.add_argument("--out", default="bench.passthrough")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--idle", type=float, default=3.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    runner = run_normalizer if args.mode == "normalize" else run_passthrough
    result = asyncio.run(runner(args))
    print("RESULT " + json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
