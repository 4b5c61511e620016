"""One series' batch: detector scores, rule signals, anomaly alerts, redelivery, state size."""

from __future__ import annotations

import random

from services.aiops_detector import detectors
from services.aiops_detector.rules import Rule
from services.aiops_detector.scoring import ANOMALY_RULE, Anomaly, SeriesState, score_series

LABELS = {"app": "shop"}
HOT = Rule(id="hot", name="cpu-hot", metric="cpu", thresholds={"WARNING": 80, "CRITICAL": 95})


def feed(points, state=None, rules=(HOT,), detector="zscore", anomaly=None):  # type: ignore[no-untyped-def]
    return score_series(
        detector=detectors.create(detector),
        rules=list(rules),
        anomaly=anomaly or Anomaly(),
        name="cpu",
        labels=LABELS,
        samples=points,
        state=state,
    )


def test_every_new_sample_is_scored_in_range_and_rules_signal_changes() -> None:
    out = feed([(1, 50.0), (2, 90.0), (3, 99.0), (4, 10.0)])
    assert [ts for ts, _ in out.scores] == [1, 2, 3, 4]
    assert all(0.0 <= s <= 1.0 for _, s in out.scores)
    assert [(s.state, s.severity, s.ts_ms) for s in out.signals] == [
        ("firing", "WARNING", 2),
        ("firing", "CRITICAL", 3),
        ("resolved", "", 4),
    ]
    fps = {s.fingerprint for s in out.signals}
    assert len(fps) == 1  # one alert, changing level
    assert out.signals[0].labels == {"app": "shop", "alertname": "cpu-hot", "metric": "cpu"}


def test_state_carries_across_batches_and_redelivery_changes_nothing() -> None:
    first = feed([(1, 50.0), (2, 90.0)])
    again = feed([(1, 50.0), (2, 90.0)], state=first.state)
    assert again.scores == [] and again.signals == []
    assert again.state == first.state
    later = feed([(2, 90.0), (3, 10.0)], state=first.state)
    assert [ts for ts, _ in later.scores] == [3]
    assert [s.state for s in later.signals] == ["resolved"]


def test_a_spike_after_a_steady_stretch_raises_then_resolves_an_anomaly_alert() -> None:
    rng = random.Random(7)
    steady = [(i * 1000, 50.0 + rng.gauss(0, 1)) for i in range(1, 200)]
    alarm = Anomaly(threshold=0.9, resolve_samples=5)
    out = feed(steady, rules=(), anomaly=alarm)
    assert out.signals == []
    spike = feed([(200_000, 500.0)], state=out.state, rules=(), anomaly=alarm)
    assert [(s.state, s.rule_id, s.severity) for s in spike.signals] == [
        ("firing", ANOMALY_RULE, "WARNING")
    ]
    assert spike.signals[0].score >= 0.9
    back = [(200_000 + i * 1000, 50.0 + rng.gauss(0, 1)) for i in range(1, 6)]
    calm = feed(back, state=spike.state, rules=(), anomaly=alarm)
    assert [s.state for s in calm.signals] == ["resolved"]
    assert calm.signals[0].fingerprint == spike.signals[0].fingerprint


def test_removed_rules_drop_their_state_and_a_switched_detector_starts_afresh() -> None:
    out = feed([(1, 90.0)])
    assert "hot" in SeriesState.loads(out.state).rules
    out = feed([(2, 90.0)], state=out.state, rules=())
    assert SeriesState.loads(out.state).rules == {}
    switched = feed([(3, 1.0)], state=out.state, rules=(), detector="resonance")
    assert [ts for ts, _ in switched.scores] == [3]


def test_state_stays_small_however_long_the_series() -> None:
    rng = random.Random(1)
    state = None
    for batch in range(20):
        points = [(batch * 1000 + i, rng.random()) for i in range(1, 1000)]
        state = feed(points, state=state).state
    assert state is not None and len(state) < 200


def test_signals_follow_their_proto_schema() -> None:
    from google.protobuf.json_format import ParseDict

    from libs.schemas.opsline.v1.alerts_pb2 import AlertSignal

    for signal in feed([(1, 99.0), (2, 1.0)]).signals:
        ParseDict(signal.to_json(), AlertSignal())
