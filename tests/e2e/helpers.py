"""What a user does against the running stack: publish, query, read the dead letters."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from libs.testing.stack import RunningStack


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def auth(stack: RunningStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_token}"}


def kcat_produce(
    stack: RunningStack,
    payload: bytes,
    headers: dict[str, str],
    topic: str = "ingest.raw",
    key: str | None = None,
) -> None:
    """Publish one record with kcat, the way an external tool would."""
    cmd = [
        str(Path(sys.executable).parent / "kcat"),
        "-P",
        "-b",
        stack.stack.bootstrap,
        "-t",
        topic,
    ]
    if key:
        cmd += ["-k", key]
    for name, value in headers.items():
        cmd += ["-H", f"{name}={value}"]
    subprocess.run(cmd, input=payload, check=True, timeout=30, capture_output=True)


async def query_until(
    client: httpx.AsyncClient,
    stack: RunningStack,
    params: list[tuple[str, str]],
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 40.0,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    series: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = await client.get(
            f"{stack.stack.gateway_url}/v1/metrics/query", params=params, headers=auth(stack)
        )
        assert response.status_code == 200, response.text
        series = response.json()["series"]
        if done(series):
            return series
        await asyncio.sleep(0.5)
    raise AssertionError(f"query {params} never satisfied; last answer {series}")


async def find_deadletter(
    stack: RunningStack, match: Callable[[dict[str, bytes]], bool], timeout: float = 30.0
) -> tuple[bytes | None, dict[str, bytes]]:
    """The first dead-letter record whose headers satisfy `match` (read from the start)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.stack.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic("deadletter") or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic("deadletter") or set()
        tps = [TopicPartition("deadletter", p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    headers = {k: v for k, v in message.headers}
                    if match(headers):
                        return message.value, headers
        raise AssertionError("no matching dead-letter record")
    finally:
        await consumer.stop()
