"""Metric samples from outside, over Kafka (kcat) and HTTP, into the store and back out."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth, find_deadletter, kcat_produce, query_until, unique

pytestmark = pytest.mark.e2e

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
WINDOW = [("start", "2000-01-01T00:00:00Z"), ("end", "2100-01-01T00:00:00Z")]


def _now(offset_s: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def _event(data: object, *, type: str = "io.opsline.metric.batch", **attrs: str) -> dict:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "tests/e2e",
        "type": type,
        "data": data,
        **attrs,
    }


@pytest.fixture
async def client():
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


async def test_kcat_publishes_samples_that_the_gateway_returns(stack: RunningStack, client) -> None:
    name = unique("kcat_cpu")
    ts = int(datetime.now(UTC).timestamp() * 1000)
    payload = orjson.dumps(
        {
            "samples": [
                {"name": name, "labels": {"app": "shop", "pod": "a"}, "value": 0.5, "ts": ts},
                {
                    "name": name,
                    "labels": {"app": "shop", "pod": "a"},
                    "value": 0.75,
                    "ts": ts + 1000,
                },
                {"name": name, "labels": {"app": "shop", "pod": "b"}, "value": 2, "ts": _now()},
                {"name": name, "labels": {"app": "cart"}, "value": 9, "ts": ts},
            ]
        }
    )
    kcat_produce(
        stack,
        payload,
        {
            "ce_specversion": "1.0",
            "ce_id": str(uuid.uuid4()),
            "ce_source": "kcat",
            "ce_type": "io.opsline.metric.batch",
            "content-type": "application/json",
        },
        key="kcat",
    )
    series = await query_until(
        client,
        stack,
        [("name", name), ("match", "app=shop"), *WINDOW],
        lambda s: sum(len(x["points"]) for x in s) == 3,
    )
    assert {x["labels"]["pod"] for x in series} == {"a", "b"}
    pod_a = next(x for x in series if x["labels"]["pod"] == "a")
    assert [p[1] for p in pod_a["points"]] == [0.5, 0.75]
    assert pod_a["points"][0][0].endswith("Z")
    only_b = await query_until(
        client,
        stack,
        [("name", name), ("match", "app=shop"), ("match", "pod=b"), *WINDOW],
        lambda s: len(s) == 1,
    )
    assert only_b[0]["points"][0][1] == 2.0


@pytest.mark.parametrize("mode", ["structured", "batch", "binary"])
async def test_http_modes_publish_samples(stack: RunningStack, client, mode: str) -> None:
    name = unique(f"http_{mode}")
    data = {"samples": [{"name": name, "labels": {"app": "shop"}, "value": 1.5, "ts": _now()}]}
    url = f"{stack.stack.gateway_url}/v1/events"
    if mode == "structured":
        event = _event(data)
        response = await client.post(
            url, content=orjson.dumps(event), headers={**auth(stack), "content-type": STRUCTURED}
        )
        ids = [event["id"]]
    elif mode == "batch":
        events = [
            _event(data),
            _event(
                {
                    "samples": [
                        {"name": name, "labels": {"app": "shop"}, "value": 2.5, "ts": _now(-5)}
                    ]
                }
            ),
        ]
        response = await client.post(
            url, content=orjson.dumps(events), headers={**auth(stack), "content-type": BATCH}
        )
        ids = [e["id"] for e in events]
    else:
        event_id = str(uuid.uuid4())
        response = await client.post(
            url,
            content=orjson.dumps(data),
            headers={
                **auth(stack),
                "content-type": "application/json",
                "ce-specversion": "1.0",
                "ce-id": event_id,
                "ce-source": "curl",
                "ce-type": "io.opsline.metric.batch",
            },
        )
        ids = [event_id]
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": ids, "rejected": []}
    expected = 2 if mode == "batch" else 1
    series = await query_until(
        client, stack, [("name", name), *WINDOW], lambda s: s and len(s[0]["points"]) == expected
    )
    assert series[0]["labels"] == {"app": "shop"}


async def test_bad_samples_are_refused_and_good_ones_of_the_batch_kept(
    stack: RunningStack, client
) -> None:
    name = unique("partial")
    event = _event(
        {
            "samples": [
                {"name": name, "labels": {"app": "shop"}, "value": 1, "ts": _now()},
                {"labels": {"app": "shop"}, "value": 2},
                {"name": name, "value": "high"},
                {"name": name, "value": 3, "ts": _now(3600)},
                {"name": name, "labels": {"app": "shop"}, "value": 4, "ts": _now(-1)},
            ]
        }
    )
    response = await client.post(
        f"{stack.stack.gateway_url}/v1/events",
        content=orjson.dumps(event),
        headers={**auth(stack), "content-type": STRUCTURED},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == [event["id"]]
    (rejected,) = body["rejected"]
    assert rejected["partial"] is True
    assert "samples[1].name: missing" in rejected["reason"]
    assert "samples[2].value: not a number" in rejected["reason"]
    assert "samples[3].ts: more than 10 minutes in the future" in rejected["reason"]
    series = await query_until(
        client, stack, [("name", name), *WINDOW], lambda s: s and len(s[0]["points"]) == 2
    )
    assert sorted(p[1] for p in series[0]["points"]) == [1.0, 4.0]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b'{"specversion": "1.0", "id": ', STRUCTURED, 400, "malformed JSON"),
        (
            orjson.dumps({"specversion": "1.0", "source": "x", "type": "t"}),
            STRUCTURED,
            400,
            "missing required CloudEvents attribute 'id'",
        ),
        (
            orjson.dumps({"specversion": "0.3", "id": "1", "source": "x", "type": "t"}),
            STRUCTURED,
            400,
            "unsupported specversion",
        ),
        (
            orjson.dumps(
                {"specversion": "1.0", "id": "1", "source": "x", "type": "t", "Bad-Name": "v"}
            ),
            STRUCTURED,
            400,
            "invalid attribute name",
        ),
        (
            orjson.dumps(_event({"samples": []}, type="io.opsline.metric.bogus")),
            STRUCTURED,
            422,
            "io.opsline.* namespace is reserved",
        ),
        (orjson.dumps(_event({"samples": [{"value": 1}]})), STRUCTURED, 422, "name: missing"),
        (
            orjson.dumps(_event({"samples": [{"name": "x", "value": None}]})),
            STRUCTURED,
            422,
            "value: missing",
        ),
        (orjson.dumps(_event({"rows": []})), STRUCTURED, 422, "data.samples: missing"),
        (orjson.dumps({"not": "a list"}), BATCH, 400, "must be a JSON array"),
        (b"plain text", "text/plain", 415, "send application/cloudevents+json"),
    ],
)
async def test_bad_http_input_gets_a_clear_4xx(
    stack: RunningStack, client, body: bytes, content_type: str, status: int, reason: str
) -> None:
    response = await client.post(
        f"{stack.stack.gateway_url}/v1/events",
        content=body,
        headers={**auth(stack), "content-type": content_type},
    )
    assert response.status_code == status, response.text
    assert reason in response.text


async def test_batch_with_one_bad_event_keeps_the_others(stack: RunningStack, client) -> None:
    name = unique("batchmix")
    good = _event({"samples": [{"name": name, "value": 7, "ts": _now()}]})
    bad = {"specversion": "1.0", "source": "x", "type": "io.opsline.metric.batch"}
    response = await client.post(
        f"{stack.stack.gateway_url}/v1/events",
        content=orjson.dumps([bad, good]),
        headers={**auth(stack), "content-type": BATCH},
    )
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == [good["id"]]
    assert body["rejected"][0]["index"] == 0
    assert "missing required CloudEvents attribute 'id'" in body["rejected"][0]["reason"]
    await query_until(client, stack, [("name", name), *WINDOW], lambda s: len(s) == 1)


async def test_oversized_body_is_refused(stack: RunningStack, client) -> None:
    huge = b"[" + b" " * (5 * 1024 * 1024 + 10) + b"]"
    response = await client.post(
        f"{stack.stack.gateway_url}/v1/events",
        content=huge,
        headers={**auth(stack), "content-type": BATCH},
    )
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc", "Bearer"])
async def test_token_is_required(stack: RunningStack, client, header: str | None) -> None:
    headers = {"content-type": STRUCTURED}
    if header is not None:
        headers["Authorization"] = header
    response = await client.post(
        f"{stack.stack.gateway_url}/v1/events",
        content=orjson.dumps(_event({"samples": []})),
        headers=headers,
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    query = await client.get(
        f"{stack.stack.gateway_url}/v1/metrics/query",
        params={"name": "x", "start": "0", "end": "1"},
        headers=headers,
    )
    assert query.status_code == 401


async def test_query_input_is_validated(stack: RunningStack, client) -> None:
    url = f"{stack.stack.gateway_url}/v1/metrics/query"
    bad_time = await client.get(
        url, params={"name": "x", "start": "yesterday", "end": _now()}, headers=auth(stack)
    )
    assert bad_time.status_code == 422 and "not an RFC 3339 timestamp" in bad_time.text
    bad_match = await client.get(
        url, params={"name": "x", "start": "0", "end": _now(), "match": "app"}, headers=auth(stack)
    )
    assert bad_match.status_code == 422 and "expected LABEL=VALUE" in bad_match.text
    missing = await client.get(url, params={"name": "x"}, headers=auth(stack))
    assert missing.status_code == 422


KAFKA_BAD = [
    ("not-json", b"{not json", {"content-type": "application/json"}, "data is not valid JSON"),
    ("no-samples", b'{"rows": []}', {"content-type": "application/json"}, "data.samples: missing"),
    (
        "bad-values",
        orjson.dumps({"samples": [{"name": "k", "value": "NaN?"}, {"value": 1}]}),
        {"content-type": "application/json"},
        "no valid sample",
    ),
    ("reserved", b"{}", {"content-type": "application/json"}, "namespace is reserved"),
]


@pytest.mark.parametrize(("case", "payload", "extra", "reason"), KAFKA_BAD)
async def test_bad_kafka_input_is_dead_lettered_untouched(
    stack: RunningStack, client, case: str, payload: bytes, extra: dict, reason: str
) -> None:
    event_id = f"bad-{case}-{uuid.uuid4()}"
    kcat_produce(
        stack,
        payload,
        {
            "ce_specversion": "1.0",
            "ce_id": event_id,
            "ce_source": "kcat",
            "ce_type": "io.opsline.metric.reserved"
            if case == "reserved"
            else "io.opsline.metric.batch",
            **extra,
        },
    )
    value, headers = await find_deadletter(stack, lambda h: h.get("ce_id") == event_id.encode())
    assert value == payload
    assert reason in headers["dl_reason"].decode()
    assert headers["dl_topic"] == b"ingest.raw"
    assert headers["dl_service"] == b"dataops-ingest"
    # the worker is still there: the next good event lands
    name = unique("after_bad")
    kcat_produce(
        stack,
        orjson.dumps({"samples": [{"name": name, "value": 1, "ts": _now()}]}),
        {
            "ce_specversion": "1.0",
            "ce_id": str(uuid.uuid4()),
            "ce_source": "kcat",
            "ce_type": "io.opsline.metric.batch",
            "content-type": "application/json",
        },
    )
    await query_until(client, stack, [("name", name), *WINDOW], lambda s: len(s) == 1)


async def test_record_without_cloudevents_headers_is_dead_lettered(stack: RunningStack) -> None:
    marker = uuid.uuid4().hex
    kcat_produce(stack, b"raw bytes " + marker.encode(), {"x-marker": marker})
    value, headers = await find_deadletter(stack, lambda h: h.get("x-marker") == marker.encode())
    assert value == b"raw bytes " + marker.encode()
    assert b"no ce_* headers" in headers["dl_reason"]


async def test_partial_kafka_batch_keeps_good_samples_and_dead_letters_the_rest(
    stack: RunningStack, client
) -> None:
    name = unique("kpartial")
    event_id = str(uuid.uuid4())
    payload = orjson.dumps(
        {
            "samples": [
                {"name": name, "value": 1, "ts": _now()},
                {"name": name, "value": True},
            ]
        }
    )
    kcat_produce(
        stack,
        payload,
        {
            "ce_specversion": "1.0",
            "ce_id": event_id,
            "ce_source": "kcat",
            "ce_type": "io.opsline.metric.batch",
            "content-type": "application/json",
        },
    )
    value, headers = await find_deadletter(stack, lambda h: h.get("ce_id") == event_id.encode())
    assert value == payload and headers["dl_partial"] == b"true"
    assert b"samples[1].value: not a number (bool)" in headers["dl_reason"]
    await query_until(client, stack, [("name", name), *WINDOW], lambda s: len(s) == 1)


async def test_other_event_types_become_ops_events(stack: RunningStack, client) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    event = _event(
        {"pipeline": "release", "status": "ok"}, type="com.example.ci.finished", subject="shop"
    )
    response = await client.post(
        f"{stack.stack.gateway_url}/v1/events",
        content=orjson.dumps(event),
        headers={**auth(stack), "content-type": STRUCTURED},
    )
    assert response.status_code == 202
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.stack.bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition("ops.events", p) for p in range(4)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found = None
        for _ in range(60):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    if dict(m.headers).get("ce_id") == event["id"].encode():
                        found = m
            if found:
                break
        assert found is not None, "ops event not published"
        data = orjson.loads(found.value)
        assert data["type"] == "com.example.ci.finished"
        assert data["data"] == {"pipeline": "release", "status": "ok"}
        assert dict(found.headers)["ce_type"] == b"io.opsline.ops.event"
    finally:
        await consumer.stop()


async def test_every_sample_of_a_series_lands_on_its_partition(stack: RunningStack, client) -> None:
    """Consumers keep per-series state by partition: a series must never move."""
    from aiokafka import AIOKafkaConsumer

    from libs.events.envelope import from_kafka
    from libs.schemas.opsline.v1.metrics_pb2 import MetricBatch

    name = unique("partitioned")
    samples = [
        {"name": name, "labels": {"host": f"h{i}"}, "value": float(i), "ts": _now(-i)}
        for i in range(12)
    ]
    for half in (samples[:6], samples[6:], samples[::2]):  # series mixed differently each time
        response = await client.post(
            f"{stack.stack.gateway_url}/v1/events",
            content=orjson.dumps(_event({"samples": half})),
            headers={**auth(stack), "content-type": STRUCTURED},
        )
        assert response.status_code == 202, response.text
    consumer = AIOKafkaConsumer(
        "metrics.points",
        bootstrap_servers=stack.stack.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: dict[str, set[int]] = {}
    occurrences = 0
    try:
        partitions = len(consumer.partitions_for_topic("metrics.points") or ())
        deadline = asyncio.get_running_loop().time() + 60
        while occurrences < 18:  # 6 + 6 + 6 samples posted
            assert asyncio.get_running_loop().time() < deadline, (occurrences, seen)
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    event = from_kafka(record.value, list(record.headers))
                    batch = MetricBatch()
                    batch.ParseFromString(event.data)
                    for sample in batch.samples:
                        if sample.name == name:
                            seen.setdefault(sample.series_id, set()).add(tp.partition)
                            occurrences += 1
    finally:
        await consumer.stop()
    assert len(seen) == 12
    for series_id, parts in seen.items():
        assert parts == {int(series_id[:8], 16) % partitions}, (series_id, parts)
