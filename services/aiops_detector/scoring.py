"""Scoring one series' samples: the learned detector, the static rules, the alert signals.

The per-series state is one bytes value in the faust table, rewritten once per series per
batch: the last accepted time, the rule and anomaly states (JSON), then the detector's own
compact state. A late or redelivered sample (not after the last accepted time) is skipped
entirely, so redelivery neither moves the model nor re-emits a score.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.aiops_detector.detectors import Detector, StateError
from services.aiops_detector.rules import Level, Rule, evaluate, fingerprint, new_state

log = logging.getLogger(__name__)

ANOMALY_RULE = "anomaly"  # rule id of the learned detector's alerts
SCORE_METRIC = "anomaly_score"
_HEAD = struct.Struct("<qH")  # last accepted ts_ms, length of the JSON part
_NEVER = -(2**63)


@dataclass(slots=True)
class Signal:
    """An alert starting, changing level or ending on one series (alert manager input)."""

    fingerprint: str
    state: str  # firing | resolved
    rule_id: str
    rule_name: str
    severity: str
    labels: dict[str, str]
    value: float
    ts_ms: int
    summary: str = ""
    score: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "state": self.state,
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "severity": self.severity,
            "labels": self.labels,
            "value": self.value,
            "ts_ms": self.ts_ms,
            "summary": self.summary,
            "score": self.score,
        }


@dataclass(slots=True)
class Anomaly:
    """How learned-detector scores become alerts."""

    threshold: float = 0.75
    resolve_samples: int = 5


@dataclass(slots=True)
class SeriesState:
    last_ts: int = _NEVER
    rules: dict[str, list[int]] = field(default_factory=dict)
    detector: bytes | None = None

    def dumps(self) -> bytes:
        meta = orjson.dumps(self.rules) if self.rules else b""
        return _HEAD.pack(self.last_ts, len(meta)) + meta + (self.detector or b"")

    @classmethod
    def loads(cls, data: bytes | None) -> SeriesState:
        if not data:
            return cls()
        last_ts, n = _HEAD.unpack_from(data)
        start = _HEAD.size
        rules = orjson.loads(data[start : start + n]) if n else {}
        return cls(last_ts, rules, data[start + n :] or None)


@dataclass(slots=True)
class Scored:
    state: bytes
    scores: list[tuple[int, float]]  # (ts_ms, score) of each accepted sample
    signals: list[Signal]


def _alert_labels(
    rule_name: str, name: str, labels: dict[str, str], extra: dict[str, str]
) -> dict[str, str]:
    return {**labels, **extra, "alertname": rule_name, "metric": name}


def score_series(
    *,
    detector: Detector,
    rules: list[Rule],
    anomaly: Anomaly,
    name: str,
    labels: dict[str, str],
    samples: Iterable[tuple[int, float]],
    state: bytes | None,
) -> Scored:
    """Fold a series' samples of one batch (time order) into its state."""
    st = SeriesState.loads(state)
    try:
        model = detector.new() if st.detector is None else detector.loads(st.detector)
    except StateError as exc:  # the detector was switched: this series starts afresh
        log.info("series %s: %s; starting a new model", name, exc)
        model = detector.new()
    active = {r.id for r in rules}
    for rule_id in [k for k in st.rules if k != ANOMALY_RULE and k not in active]:
        del st.rules[rule_id]
    anomaly_state = st.rules.setdefault(ANOMALY_RULE, [0, 0])  # [normal run, firing]
    scores: list[tuple[int, float]] = []
    signals: list[Signal] = []
    for ts_ms, value in samples:
        if ts_ms <= st.last_ts:
            continue
        st.last_ts = ts_ms
        score = model.step(ts_ms, value)
        scores.append((ts_ms, score))
        signal = _anomaly(anomaly, anomaly_state, detector.name, name, labels, ts_ms, value, score)
        if signal is not None:
            signals.append(signal)
        for rule in rules:
            rule_state = st.rules.setdefault(rule.id, new_state())
            changed, level = evaluate(rule, rule_state, ts_ms, value)
            if not changed:
                continue
            alert_labels = _alert_labels(rule.name, name, labels, rule.labels)
            signals.append(
                Signal(
                    fingerprint=fingerprint(rule.id, alert_labels),
                    state="resolved" if level is None else "firing",
                    rule_id=rule.id,
                    rule_name=rule.name,
                    severity=str(level or ""),
                    labels=alert_labels,
                    value=value,
                    ts_ms=ts_ms,
                    summary=rule.summary or _summary(rule, name, level),
                )
            )
    if anomaly_state == [0, 0]:
        del st.rules[ANOMALY_RULE]
    st.detector = model.dumps()
    return Scored(st.dumps(), scores, signals)


def _summary(rule: Rule, name: str, level: Level | None) -> str:
    if level is None:
        return f"{name} is back within {rule.name}'s thresholds"
    return f"{name} {rule.comparator} {rule.thresholds[level]:g} ({level})"


def _anomaly(
    anomaly: Anomaly,
    state: list[int],
    detector: str,
    name: str,
    labels: dict[str, str],
    ts_ms: int,
    value: float,
    score: float,
) -> Signal | None:
    """Fire when a score crosses the threshold; resolve after a run of normal samples."""
    if score >= anomaly.threshold:
        state[0] = 0
        if state[1]:
            return None
        state[1] = 1
        firing = "firing"
    else:
        if not state[1]:
            return None
        state[0] += 1
        if state[0] < anomaly.resolve_samples:
            return None
        state[1] = 0
        firing = "resolved"
    alert_labels = _alert_labels(f"anomaly:{detector}", name, labels, {})
    return Signal(
        fingerprint=fingerprint(ANOMALY_RULE, alert_labels),
        state=firing,
        rule_id=ANOMALY_RULE,
        rule_name=f"anomaly:{detector}",
        severity=Level.WARNING.value if firing == "firing" else "",
        labels=alert_labels,
        value=value,
        ts_ms=ts_ms,
        summary=f"{name} is anomalous (score {score:.4f} by {detector})",
        score=score,
    )
