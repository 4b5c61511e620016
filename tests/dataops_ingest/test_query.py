"""Queries, timeline documents and retention, against a real noida-db (Elasticsearch API)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from elasticsearch import AsyncElasticsearch

from bench.infra import free_port
from libs.devstack.stack import noida_binary
from libs.events import topics as t
from libs.events.envelope import CloudEvent
from libs.events.worker import Record
from services.dataops_ingest import handlers, queries, store, timeline

PREFIX = "qtest"
T0 = 1_763_780_010_000  # 2025-11-22T02:53:30Z, a multiple of 30 s
NOW = datetime(2026, 11, 22, tzinfo=UTC)


# --- pure parts ----------------------------------------------------------------------------


def test_matchers_steps_and_rates() -> None:
    parsed = queries.parse_matchers(["pod=a", "env!=dev", "mode=~idle|user", "cpu!~1.*"])
    assert [(m.label, m.op, m.value) for m in parsed] == [
        ("pod", "=", "a"),
        ("env", "!=", "dev"),
        ("mode", "=~", "idle|user"),
        ("cpu", "!~", "1.*"),
    ]
    assert parsed[1].clause() == (True, {"term": {"labels.env": "dev"}})
    for bad, reason in [("pod", "expected LABEL=VALUE"), ("x=~(", "bad regular expression")]:
        with pytest.raises(queries.QueryError, match=reason):
            queries.parse_matchers([bad])
    assert queries.parse_step("90") == 90_000 and queries.parse_step("5m") == 300_000
    for bad in ("500ms", "soon"):
        with pytest.raises(queries.QueryError):
            queries.parse_step(bad)
    # a counter going 10 → 40 → 5 (reset) over 30 s steps
    assert queries._rate([(0, 10.0), (30_000, 40.0), (60_000, 5.0)]) == [
        (30_000, 1.0),
        (60_000, 5.0 / 30),
    ]


def test_expired_indices_are_the_months_wholly_past_retention() -> None:
    names = [
        "opsline-metrics-2026.09",
        "opsline-metrics-2026.10",
        "opsline-logs-2026.10",
        "opsline-logs-2026.11",
        "opsline-alerts-2025.12",
        "other-metrics-2020.01",
        "opsline-metrics-latest",
        "opsline-unknown-2020.01",
    ]
    assert store.expired_indices(names, prefix="opsline", days=30, now=NOW) == [
        "opsline-alerts-2025.12",
        "opsline-metrics-2026.09",
    ]
    assert store.expired_indices(names, prefix="opsline", days=21, now=NOW) == [
        "opsline-alerts-2025.12",
        "opsline-logs-2026.10",
        "opsline-metrics-2026.09",
        "opsline-metrics-2026.10",
    ]


def _record(topic: str, type_: str, data: object, *, key: str = "", at: str = "") -> Record:
    event = CloudEvent.create(type=type_, source="svc", subject="s-1", data=data, time=at or None)
    return Record(topic, 0, 0, key.encode(), event.data, [], T0, event)


def test_control_plane_events_become_timeline_documents() -> None:
    index, doc_id, doc = timeline.control_plane_document(
        _record(
            t.DEPLOY_EVENTS,
            "io.opsline.deploy.state_changed",
            {
                "app": "shop",
                "instance": "shop-prod",
                "version": "1.2.0",
                "revision": 3,
                "state": "FAILURE",
                "reason": "web: CrashLoopBackOff",
                "kind": "deploy",
            },
            at="2026-11-21T10:00:00Z",
        ),
        prefix="opsline",
    )
    assert index == "opsline-events-2026.11"
    assert (doc["app"], doc["kind"], doc["ts"]) == ("shop", "deploy", 1_795_255_200_000)
    assert doc_id == doc["id"]
    assert doc["summary"] == "deploy 1.2.0 to shop-prod rev 3: FAILURE: web: CrashLoopBackOff"
    _, _, step = timeline.control_plane_document(
        _record(
            t.BUILD_EVENTS,
            "io.opsline.build.step",
            {
                "app": "shop",
                "build_id": "b1",
                "component": "web",
                "step": "pack",
                "status": "succeeded",
                "log": ["x" * 1000],
            },
        ),
        prefix="opsline",
    )
    assert "log" not in step["data"] and step["summary"] == "build step web pack: succeeded"
    index, _, alert = timeline.control_plane_document(
        _record(
            t.ALERT_EVENTS,
            "io.opsline.alert.raised",
            {"labels": {"app": "shop"}, "severity": "critical", "summary": "p99 high"},
            key="fp-1",
        ),
        prefix="opsline",
    )
    assert index.startswith("opsline-alerts-")
    assert (alert["app"], alert["fingerprint"], alert["state"], alert["summary"]) == (
        "shop",
        "fp-1",
        "raised",
        "p99 high",
    )
    for type_, data, summary in [
        (
            "io.opsline.package.created",
            {"app": "shop", "version": "0.1.0"},
            "package 0.1.0 created",
        ),
        (
            "io.opsline.app.updated",
            {"app": "shop", "changed": ["components.web"]},
            "app updated: components.web",
        ),
    ]:
        _, _, doc = timeline.control_plane_document(
            _record(t.APP_EVENTS, type_, data), prefix="opsline"
        )
        assert (doc["kind"], doc["summary"]) == ("app", summary)
    with pytest.raises(ValueError, match="unexpected event type"):
        handlers.to_documents(_record(t.INGEST_RAW, "x.y", {}), prefix="opsline")


# --- against the store ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def es_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    data: Path = tmp_path_factory.mktemp("noida")
    proc = subprocess.Popen(
        [
            noida_binary(),
            "start",
            "--only",
            "elasticsearch",
            "--elasticsearch-port",
            str(port),
            "--data-dir",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def _sample(series: str, labels: dict[str, str], ts: int, value: float) -> tuple[str, str, dict]:
    doc = {"series_id": series, "name": "reqs_total", "labels": labels, "ts": ts, "value": value}
    return store.index_for(PREFIX, "metrics", ts), f"{series}:{ts}", doc


@pytest.fixture(scope="module")
async def es(es_url: str) -> AsyncIterator[AsyncElasticsearch]:
    client = AsyncElasticsearch(es_url)
    await store.install_templates(client, PREFIX)
    docs = []
    for i in range(12):  # two counters, a sample every 10 s for 2 minutes
        docs.append(_sample("sa", {"pod": "a", "env": "prod"}, T0 + i * 10_000, 10.0 * i))
        docs.append(_sample("sb", {"pod": "b", "env": "dev"}, T0 + i * 10_000, 100.0 + i))
    logs = [
        ("payment failed for order 42", "error", "shop"),
        ("order 43 shipped", "info", "shop"),
        ("payment accepted", "info", "cart"),
    ]
    for i, (message, level, app) in enumerate(logs):
        docs.append(
            (
                store.index_for(PREFIX, "logs", T0 + i),
                f"log{i}",
                {
                    "ts": T0 + i,
                    "level": level,
                    "message": message,
                    "labels": {"app": app},
                    "source": "t",
                },
            )
        )
    records = [
        _record(
            t.BUILD_EVENTS,
            "io.opsline.build.succeeded",
            {"app": "shop", "version": "1.0.0"},
            at="2025-11-22T02:53:21Z",
        ),
        _record(
            t.DEPLOY_EVENTS,
            "io.opsline.deploy.state_changed",
            {"app": "shop", "instance": "i", "state": "SUCCESS", "version": "1.0.0"},
            at="2025-11-22T02:53:22Z",
        ),
        _record(
            t.ALERT_EVENTS,
            "io.opsline.alert.raised",
            {"app": "shop", "summary": "slow"},
            at="2025-11-22T02:53:23Z",
        ),
        _record(t.APP_EVENTS, "io.opsline.app.created", {"app": "cart"}, at="2025-11-22T02:53:24Z"),
    ]
    ops = CloudEvent.create(
        type=t.OPS_EVENT,
        source="ci",
        data={
            "id": "rel-7",
            "source": "github",
            "type": "release",
            "ts_ms": T0 + 5000,
            "data": {"app": "shop", "summary": "v1 tagged"},
        },
    )
    records.append(Record(t.OPS_EVENTS, 0, 0, None, ops.data, [], T0, ops))
    for record in records:
        docs += handlers.to_documents(record, prefix=PREFIX)
    assert await store.bulk_index(client, docs) == []
    await client.indices.refresh(index=f"{PREFIX}-*")
    yield client
    await client.close()


async def test_aggregated_range_query_per_series_and_step(es: AsyncElasticsearch) -> None:
    common = {
        "prefix": PREFIX,
        "name": "reqs_total",
        "start_ms": T0,
        "end_ms": T0 + 119_999,
        "step_ms": 30_000,
    }
    found, truncated = await queries.metric_range(es, matchers=[], agg="max", **common)
    found.sort(key=lambda s: s["labels"]["pod"])
    assert not truncated and [s["labels"]["pod"] for s in found] == ["a", "b"]
    assert [p[1] for p in found[0]["points"]] == [20.0, 50.0, 80.0, 110.0]
    avg, _ = await queries.metric_range(
        es, matchers=queries.parse_matchers(["env=prod"]), agg="avg", **common
    )
    assert [p[1] for p in avg[0]["points"]] == [10.0, 40.0, 70.0, 100.0] and len(avg) == 1
    rate, _ = await queries.metric_range(
        es, matchers=queries.parse_matchers(["pod!=b"]), agg="rate", **common
    )
    assert [p[1] for p in rate[0]["points"]] == [1.0, 1.0, 1.0]
    summed, _ = await queries.metric_range(
        es, matchers=queries.parse_matchers(["pod=~b|c"]), agg="sum", **common
    )
    assert [p[1] for p in summed[0]["points"]] == [303.0, 312.0, 321.0, 330.0]
    assert summed[0]["points"][0][0] == "2025-11-22T02:53:30.000Z"
    with pytest.raises(queries.QueryError, match="more than 11000 points"):
        await queries.metric_range(es, matchers=[], agg="avg", **(common | {"step_ms": 1}))


async def test_series_listing(es: AsyncElasticsearch) -> None:
    found, truncated = await queries.series(
        es,
        prefix=PREFIX,
        name=None,
        matchers=queries.parse_matchers(["env=~p.*"]),
        start_ms=None,
        end_ms=None,
        limit=10,
    )
    assert [(s["name"], s["labels"], s["samples"]) for s in found] == [
        ("reqs_total", {"pod": "a", "env": "prod"}, 12)
    ]
    assert found[0]["last_seen"] == "2025-11-22T02:55:20.000Z" and not truncated


async def test_log_search_with_query_labels_level_and_paging(es: AsyncElasticsearch) -> None:
    kw = {"prefix": PREFIX, "start_ms": None, "end_ms": None}
    hits = await queries.search_logs(
        es, query="payment", matchers=[], level=None, offset=0, limit=10, **kw
    )
    assert hits["total"] == 2
    assert [r["message"] for r in hits["records"]] == [
        "payment accepted",
        "payment failed for order 42",
    ]
    shop = await queries.search_logs(
        es,
        query=None,
        matchers=queries.parse_matchers(["app=shop"]),
        level="info",
        offset=0,
        limit=10,
        **kw,
    )
    assert [r["message"] for r in shop["records"]] == ["order 43 shipped"]
    page = await queries.search_logs(
        es, query=None, matchers=[], level=None, offset=1, limit=1, **kw
    )
    assert page["total"] == 3 and page["records"][0]["message"] == "order 43 shipped"
    with pytest.raises(queries.QueryError, match="refused the query"):
        await queries.search_logs(
            es, query="payment AND (", matchers=[], level=None, offset=0, limit=5, **kw
        )
    with pytest.raises(queries.QueryError, match="may not exceed"):
        await queries.search_logs(
            es, query=None, matchers=[], level=None, offset=9_999, limit=5, **kw
        )


async def test_timeline_is_the_apps_events_newest_first(es: AsyncElasticsearch) -> None:
    kw = {"prefix": PREFIX, "start_ms": None, "end_ms": None, "offset": 0, "limit": 10}
    shop = await queries.timeline(es, app="shop", kinds=[], **kw)
    assert [(e["kind"], e["summary"]) for e in shop["events"]] == [
        ("ops", "v1 tagged"),
        ("alert", "slow"),
        ("deploy", "deploy 1.0.0 to i rev 0: SUCCESS"),
        ("build", "build 1.0.0 succeeded"),
    ]
    only = await queries.timeline(es, app="shop", kinds=["build", "deploy"], **kw)
    assert [e["kind"] for e in only["events"]] == ["deploy", "build"]
    assert [
        e["kind"] for e in (await queries.timeline(es, app="cart", kinds=[], **kw))["events"]
    ] == ["app"]


async def test_a_store_that_is_down_is_unavailable() -> None:
    down = AsyncElasticsearch(f"http://127.0.0.1:{free_port()}", max_retries=0)
    try:
        with pytest.raises(store.StoreUnavailable):
            await queries.timeline(
                down,
                prefix=PREFIX,
                app="shop",
                kinds=[],
                start_ms=None,
                end_ms=None,
                offset=0,
                limit=5,
            )
    finally:
        await down.close()


async def test_retention_falls_back_to_deleting_old_monthly_indices(
    es: AsyncElasticsearch,
) -> None:
    assert await store.install_ilm_policy(es, "rtest", 30) is False  # noida-db has no ILM
    for month in ("2020.01", "2026.10", "2026.11"):
        await es.index(index=f"rtest-logs-{month}", id="x", document={"ts": 1, "message": "m"})
    deleted = await store.delete_expired(es, prefix="rtest", days=30, now=NOW)
    assert deleted == ["rtest-logs-2020.01"]
    left = await es.indices.get(index="rtest-*", allow_no_indices=True)
    assert sorted(left) == ["rtest-logs-2026.10", "rtest-logs-2026.11"]
