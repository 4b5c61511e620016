"""The stream, driven through faust's test context (no broker): routing and scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from libs.config import CommonSettings
from libs.events import topics as t
from libs.events.envelope import PROTOBUF, CloudEvent, from_kafka, to_kafka
from libs.schemas.opsline.v1.metrics_pb2 import MetricBatch
from libs.telemetry.samples import encode_batch, parse_metric_batch
from services.aiops_detector.app import Rules, create_app, partition_of, store_url
from services.aiops_detector.rules import Rule, RuleSet
from services.aiops_detector.scoring import SCORE_METRIC, SeriesState
from services.aiops_detector.settings import DetectorSettings


class Sent:
    """What the agents sent, by topic (their sends are replaced: there is no broker)."""

    def __init__(self, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by_topic: dict[str, list[dict[str, Any]]] = {}
        for name, topic in app.detector_topics.items():
            monkeypatch.setattr(topic, "send", self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def send(**kwargs: Any) -> None:
            self.by_topic.setdefault(name, []).append(kwargs)

        return send


def batch(samples: list[dict[str, Any]]) -> list[Any]:
    return parse_metric_batch({"samples": samples}).samples


@pytest.fixture
def app(tmp_path: Path) -> Any:
    rules = Rules()
    rules.replace(
        RuleSet(
            [Rule(id="r1", name="cpu-hot", metric="cpu", thresholds={"WARNING": 5, "CRITICAL": 9})]
        )
    )
    app = create_app(DetectorSettings(), CommonSettings(home=tmp_path, topic_partitions=4), rules)
    app.finalize()
    return app


def agent(app: Any, name: str) -> Any:
    return app.agents[f"services.aiops_detector.app.{name}"]


async def test_router_sends_each_series_to_its_own_partition(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(app, monkeypatch)
    samples = batch(
        [{"name": "cpu", "labels": {"pod": str(i)}, "value": 1.0, "ts": 1000} for i in range(20)]
        + [{"name": SCORE_METRIC, "labels": {"metric": "cpu"}, "value": 0.1, "ts": 1000}]
    )
    event = CloudEvent.create(
        type=t.METRIC_POINTS,
        source="tests",
        datacontenttype=PROTOBUF,
        data=encode_batch(samples, source_event_id="e"),
    )
    _, value, headers = to_kafka(event)
    async with agent(app, "route_points").test_context() as ctx:
        await ctx.put(value, key=b"k", headers=headers)
        await ctx.put(b"garbage", key=b"k", headers=[])
    routed = sent.by_topic["series"]
    seen = set()
    for record in routed:
        ids = [s.series_id for s in MetricBatch.FromString(record["value"]).samples]
        assert {partition_of(i, 4) for i in ids} == {record["partition"]}
        seen |= set(ids)
    # every series routed once, our own score series not fed back
    assert seen == {s.series_id for s in samples if s.name == "cpu"}
    assert len(routed) == len({partition_of(i, 4) for i in seen})


async def test_scorer_keeps_state_per_series_and_emits_scores_and_signals(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(app, monkeypatch)
    samples = batch(
        [
            {"name": "cpu", "labels": {"app": "shop"}, "value": 1.0, "ts": 1000},
            {"name": "cpu", "labels": {"app": "shop"}, "value": 10.0, "ts": 2000},
            {"name": "cpu", "labels": {"app": "cart"}, "value": 7.0, "ts": 1000},
        ]
    )
    data = encode_batch(samples, source_event_id="e1")
    async with agent(app, "score_points").test_context() as ctx:
        await ctx.put(data, key=b"k")
        await ctx.put(data, key=b"k")  # redelivered: no new scores, no new signals
    table = app.series_table
    shop, cart = samples[0].series_id, samples[2].series_id
    assert SeriesState.loads(table[shop.encode()]).last_ts == 2000
    assert SeriesState.loads(table[cart.encode()]).last_ts == 1000
    signals = [from_kafka(r["value"], r["headers"]).json() for r in sent.by_topic["signals"]]
    assert sorted((s["labels"]["app"], s["severity"]) for s in signals) == [
        ("cart", "WARNING"),
        ("shop", "CRITICAL"),
    ]
    assert all(
        r["key"] == s["fingerprint"].encode()
        for r, s in zip(sent.by_topic["signals"], signals, strict=True)
    )
    (scores,) = sent.by_topic["points"]
    emitted = MetricBatch.FromString(from_kafka(scores["value"], scores["headers"]).data).samples
    assert len(emitted) == 3
    assert {s.name for s in emitted} == {SCORE_METRIC}
    assert {(s.labels["metric"], s.labels["app"], s.labels["detector"]) for s in emitted} == {
        ("cpu", "shop", "zscore"),
        ("cpu", "cart", "zscore"),
    }
    assert all(0.0 <= s.value <= 1.0 for s in emitted)
    assert app.detector_status["scored"] == 3


async def test_an_undecodable_batch_goes_to_deadletter_and_the_agent_goes_on(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = Sent(app, monkeypatch)
    good = encode_batch(
        batch([{"name": "cpu", "labels": {}, "value": 1.0, "ts": 5}]), source_event_id="x"
    )
    async with agent(app, "score_points").test_context() as ctx:
        await ctx.put(b"\xff\xff\xff", key=b"k")
        await ctx.put(good, key=b"k")
    (dead,) = sent.by_topic["deadletter"]
    assert dead["value"] == b"\xff\xff\xff"
    reason = dict(dead["headers"])["dl_reason"].decode()
    assert reason.startswith("undecodable metric batch")
    assert app.detector_status["scored"] == 1
    assert "signals" not in sent.by_topic


def test_state_is_changelogged_as_raw_bytes(app: Any) -> None:
    """Recovery reads the changelog back: our bytes must not go through JSON."""
    table = app.series_table
    topic = table.changelog_topic
    assert (topic.key_serializer, topic.value_serializer) == ("raw", "raw")
    state = SeriesState(last_ts=5, rules={"r1": [1, 2, 0, 0, 1]}, detector=b"\x01\x01\xff").dumps()
    wire = app.serializers.dumps_value(bytes, state, serializer=table.value_serializer)
    assert app.serializers.loads_value(bytes, wire, serializer=table.value_serializer) == state


def test_store_is_rocksdb_only_when_available() -> None:
    try:
        import rocksdict  # noqa: F401

        expected = "rocksdict://"
    except ImportError:
        expected = "memory://"
    assert store_url("auto") == expected
    assert store_url("memory://") == "memory://"


def test_detector_comes_from_the_settings(tmp_path: Path) -> None:
    settings = DetectorSettings(
        detector="zscore", detector_params=orjson.dumps({"alpha": 0.5}).decode()
    )
    app = create_app(settings, CommonSettings(home=tmp_path))
    assert app.detector.name == "zscore" and app.detector.params["alpha"] == 0.5
    with pytest.raises(ValueError, match="unknown detector"):
        create_app(DetectorSettings(detector="nope"), CommonSettings(home=tmp_path))
