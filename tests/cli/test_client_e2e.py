"""OpslineClient against the running stack: the README's CI release announcement seen on
the live stream, a batch split over several requests queried back with step and agg, and
publishes that ride out the gateway's real rate limit (429, Retry-After)."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from libs.testing.stack import RunningStack
from opsline.client import OpslineClient

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_ci_snippet() -> str:
    """The first Python block of the README's "Python client" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python client\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "no Python example in the README's Python client section"
    return found.group(1)


def _client(stack: RunningStack, **kwargs: Any) -> OpslineClient:
    return OpslineClient(stack.stack.gateway_url, stack.admin_token, env={}, **kwargs)


def _follow_into(ops: OpslineClient, out: queue.Queue[dict[str, Any]], **filters: Any) -> None:
    try:
        for event in ops.follow_events(**filters):
            out.put(event)
    except Exception as exc:  # the test sees it as an item, not as a silent thread
        out.put({"error": repr(exc)})


def test_the_readme_ci_job_announces_a_release(stack: RunningStack) -> None:
    snippet = readme_ci_snippet()
    assert len([line for line in snippet.splitlines() if line.strip()]) == 5
    app = f"shop-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "OPSLINE_URL": stack.stack.gateway_url,
        "OPSLINE_TOKEN": stack.admin_token,
        "CI_PIPELINE_URL": "https://ci.example.com/pipelines/42",
        "APP": app,
        "VERSION": "1.4.2",
    }
    run = subprocess.run(
        [sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    # Following from an id the gateway never saw replays what it still holds, then goes
    # live: the announcement is found whether it is through the pipeline yet or not.
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    missed: list[str] = []
    ops = _client(stack)
    threading.Thread(
        target=_follow_into,
        args=(ops, events),
        kwargs={
            "types": ["io.opsline.ops."],
            "subject": app,
            "last_event_id": "none-such",
            "on_missed": missed.append,
        },
        daemon=True,
    ).start()
    try:
        event = events.get(timeout=60)
    finally:
        ops.close()
    assert "error" not in event, event
    assert event["type"] == "io.opsline.ops.event" and event["subject"] == app
    assert event["data"]["type"] == "com.example.ci.release"
    assert event["data"]["source"] == "https://ci.example.com/pipelines/42"
    assert missed  # the gateway said it replayed from the oldest event it holds


def test_a_split_batch_queried_back_by_step(stack: RunningStack) -> None:
    name = f"client_e2e_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    events = [
        {
            "type": "io.opsline.metric.batch",
            "source": "client-e2e",
            "data": {
                "samples": [
                    {
                        "name": name,
                        "labels": {"app": "shop", "pad": "x" * 200},
                        "value": float(second),
                        "ts": int((now + timedelta(minutes=minute, seconds=second)).timestamp())
                        * 1000,
                    }
                    for second in range(part * 5, part * 5 + 5)
                ]
            },
        }
        for minute in range(3)
        for part in range(4)  # four events a minute, five samples each: 20 a minute
    ]
    with _client(stack, max_batch_bytes=4_000) as ops:
        result = ops.publish_batch(events)
        assert len(result["accepted"]) == 12 and result["rejected"] == []
        deadline = time.monotonic() + 60
        counts: list[float] = []
        while time.monotonic() < deadline:
            series = ops.query_metrics(
                name,
                now - timedelta(minutes=1),
                now + timedelta(minutes=4),
                {"app": "shop"},
                step=timedelta(minutes=1),
                agg="count",
            )
            counts = [point[1] for s in series for point in s["points"]]
            if sum(counts) >= 60:
                break
            time.sleep(0.5)
    assert counts == [20, 20, 20], counts


def test_publishes_ride_out_the_rate_limit(stack: RunningStack) -> None:
    with _client(stack) as admin:
        token = admin.create_token(
            f"client-e2e-{uuid.uuid4().hex[:6]}", rate_limit_per_s=1, rate_limit_burst=1
        )["token"]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    ops = OpslineClient(stack.stack.gateway_url, token, env={}, sleep=sleep)
    with ops:
        accepted = [ops.publish("com.example.ci.step", "client-e2e", {"n": n}) for n in range(3)]
    assert [len(a["accepted"]) for a in accepted] == [1, 1, 1]
    assert waits and all(w >= 1 for w in waits)  # Retry-After, whole seconds
