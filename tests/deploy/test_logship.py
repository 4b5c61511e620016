"""The log shipper's buffer: bounded, grouped per instance, kept while Kafka is away."""

from __future__ import annotations

import asyncio
from typing import Any

from libs.events.envelope import CloudEvent
from services.deploy.logship import LogShipper


class FlakyPublisher:
    """Refuses the first `failures` publishes (as an unreachable broker would), then keeps
    what it is given."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[str, CloudEvent, Any]] = []

    async def publish(self, topic: str, event: CloudEvent, *, key: Any = None) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("KafkaConnectionError: no broker")
        self.sent.append((topic, event, key))


async def test_lines_wait_for_kafka_and_arrive_in_order_grouped_by_instance() -> None:
    shipper = LogShipper(batch_lines=3)
    for i in range(4):
        shipper.add("shop-dev", "web", f"line {i}")
    shipper.add("shop-dev", "web", "   ")  # blank lines are not logs
    shipper.add("cart-dev", "api", "[opsline] restarting web after exit code 1")
    publisher = FlakyPublisher(failures=2)
    stop = asyncio.Event()
    task = asyncio.create_task(shipper.run(publisher, stop, interval=0.05))  # type: ignore[arg-type]
    for _ in range(100):
        if sum(len(e.json()["records"]) for _, e, _ in publisher.sent) == 5:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert {t for t, _, _ in publisher.sent} == {"ingest.raw"}
    by_key: dict[str, list[dict]] = {}
    for _, event, key in publisher.sent:
        assert event.type == "io.opsline.log.batch" and event.subject == key
        by_key.setdefault(key, []).extend(event.json()["records"])
    assert [r["message"] for r in by_key["shop-dev"]] == [f"line {i}" for i in range(4)]
    [note] = by_key["cart-dev"]
    assert note["level"] == "notice" and note["labels"] == {
        "instance": "cart-dev",
        "component": "api",
        "stream": "opsline",
    }


def test_a_full_buffer_drops_the_oldest_lines_and_counts_them() -> None:
    shipper = LogShipper(max_lines=3)
    for i in range(5):
        shipper.add("shop-dev", "web", f"line {i}")
    assert shipper.dropped == 2
    records = shipper._take()["shop-dev"]
    assert [r["message"] for r in records] == ["line 2", "line 3", "line 4"]
