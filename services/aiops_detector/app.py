"""aiops-detector's stream: a faust app over metrics.points with per-series state in a table.

Two agents. `route_points` re-keys metric batches onto `aiops.series` so that a series
always lands on the same partition: producers of metrics.points group samples into
batches, and one batch's key says nothing of the other series in it. `score_series`
then owns each series on its partition: it folds the series' samples of a batch into the
series' state in one table write (changelogged; recovered when a partition moves to
another worker), scores each sample with the detector, evaluates the static rules, and
emits the scores (the `anomaly_score` series) and alert signals (`aiops.signals`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import faust
import orjson
from google.protobuf.message import DecodeError
from opentelemetry import trace

from libs.config import CommonSettings
from libs.events import topics as t
from libs.events.deadletter import deadletter_headers
from libs.events.envelope import PROTOBUF, CloudEvent, EnvelopeError, from_kafka, to_kafka
from libs.observability.metrics import get_metrics
from libs.observability.tracing import context_from_kafka, tracer
from libs.schemas.opsline.v1.metrics_pb2 import MetricBatch
from libs.telemetry.samples import MAX_LABELS, NormSample, Series, encode_batch
from services.aiops_detector import detectors
from services.aiops_detector.rules import RuleSet
from services.aiops_detector.scoring import SCORE_METRIC, Anomaly, SeriesState, score_series
from services.aiops_detector.settings import DetectorSettings

NAME = "aiops-detector"
SOURCE = "opsline/aiops-detector"
ALERT_SIGNAL = "io.opsline.alert.signal"
log = logging.getLogger(__name__)
MEMO_MAX = 200_000


class Rules:
    """The rules the stream evaluates: a snapshot the alert manager refreshes."""

    def __init__(self) -> None:
        self.current = RuleSet()
        self.loaded = False

    def replace(self, ruleset: RuleSet) -> None:
        self.current, self.loaded = ruleset, True


def store_url(setting: str) -> str:
    """`auto`: RocksDB (rocksdict) when installed, else memory (rebuilt from the changelog)."""
    if setting != "auto":
        return setting
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        return "memory://"
    return "rocksdict://"


def partition_of(series_id: str, partitions: int) -> int:
    return int(series_id[:8], 16) % partitions


def _score_sample_series(name: str, labels: Any, detector: str) -> Series:
    extra = {"metric": name, "detector": detector}
    kept = dict(list(labels.items())[: MAX_LABELS - len(extra)])
    return Series(SCORE_METRIC, {**kept, **extra})


def describe_worker(app: faust.App) -> dict[str, Any]:
    """This worker's share of the series: the partitions it owns and the series it holds."""
    actives = app.assignor.assigned_actives()
    table = app.series_table  # type: ignore[attr-defined]
    return {
        "partitions": sorted(tp.partition for tp in actives if tp.topic == t.AIOPS_SERIES),
        "series": len(table),
        "scored": app.detector_status["scored"],  # type: ignore[attr-defined]
        "rules": sorted(
            r.id
            for rules in app.rules.current.by_metric.values()  # type: ignore[attr-defined]
            for r in rules
        ),
    }


def describe_series(app: faust.App, series_id: str) -> dict[str, Any] | None:
    """A series' state as this worker holds it (None: not here)."""
    data = app.series_table.get(series_id.encode())  # type: ignore[attr-defined]
    if data is None:
        return None
    st = SeriesState.loads(data)
    return {
        "series_id": series_id,
        "partition": partition_of(series_id, app.conf.topic_partitions),
        "last_ts": st.last_ts,
        "rules": st.rules,
        "state_bytes": len(data),
    }


def create_app(
    settings: DetectorSettings, common: CommonSettings, rules: Rules | None = None
) -> faust.App:
    rules = rules or Rules()
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{h}" for h in common.kafka_bootstrap.split(",")],
        store=store_url(settings.store),
        datadir=settings.data_dir or str(common.home / NAME),
        web_host=settings.host,
        web_port=settings.port,
        topic_partitions=common.topic_partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        producer_acks=-1,
        # batch the changelog and output records instead of one request per record
        producer_linger=0.01,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
    )
    partitions = common.topic_partitions
    detector = detectors.create(settings.detector, **orjson.loads(settings.detector_params))
    anomaly = Anomaly(settings.anomaly_threshold, settings.anomaly_resolve_samples)
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
    raw |= {"key_serializer": "raw", "value_serializer": "raw"}
    points = app.topic(t.METRICS_POINTS, **raw)
    series_topic = app.topic(t.AIOPS_SERIES, partitions=partitions, **raw)
    signals = app.topic(t.AIOPS_SIGNALS, **raw)
    deadletter = app.topic(t.DEADLETTER, key_serializer="raw", value_serializer="raw")
    state = app.Table(
        "series_state",
        default=None,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
    )
    # the state is our own bytes: stored and changelogged as they are (faust would JSON them)
    state.key_serializer = state.value_serializer = "raw"  # type: ignore[attr-defined]
    metrics = get_metrics()
    scored_total = metrics.samples_scored.labels(detector.name)
    status = {"assigned": False, "scored": 0, "signals": 0}

    @app.on_partitions_assigned.connect
    async def _assigned(*_args: Any, **_kwargs: Any) -> None:
        status["assigned"] = True

    @app.agent(points)
    async def route_points(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            headers = list(message.headers or [])
            try:
                ce = from_kafka(message.value, headers)
                batch = MetricBatch.FromString(ce.data)
            except (EnvelopeError, DecodeError) as exc:
                await _deadletter(message, headers, f"undecodable metric batch: {exc}")
                continue
            metrics.consumed.labels(t.METRICS_POINTS, ce.type).inc()
            groups: dict[int, list[Any]] = defaultdict(list)
            for sample in batch.samples:
                if sample.name != SCORE_METRIC and len(sample.series_id) >= 8:
                    groups[partition_of(sample.series_id, partitions)].append(sample)
            trace_headers = [(k, v) for k, v in headers if k in ("traceparent", "tracestate")]
            for part, samples in groups.items():
                if len(samples) == len(batch.samples):
                    data = ce.data  # one partition's samples already: forward as it is
                else:
                    data = MetricBatch(samples=samples).SerializeToString()
                await series_topic.send(
                    key=samples[0].series_id.encode(),
                    value=data,
                    partition=part,
                    headers=trace_headers,
                )

    @app.agent(series_topic)
    async def score_points(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            headers = list(message.headers or [])
            with tracer().start_as_current_span(
                "detect", context=context_from_kafka(headers), kind=trace.SpanKind.CONSUMER
            ):
                try:
                    batch = MetricBatch.FromString(message.value)
                except DecodeError as exc:
                    await _deadletter(message, headers, f"undecodable metric batch: {exc}")
                    continue
                try:
                    await _score(batch)
                except Exception as exc:  # a poison batch must not stop the agent
                    log.exception("detector failed on %s@%d", message.topic, message.offset)
                    await _deadletter(
                        message, headers, f"handler failed: {type(exc).__name__}: {exc}"
                    )

    # What a series needs besides its state, derived once and kept while the rules stay
    # the same: its labels, the rules that match it, its score series. A bounded memo of
    # derived values, not state: losing it costs only the time to derive them again.
    memo: dict[str, tuple[Any, str, dict[str, str], list[Any], Series]] = {}

    def _series_info(series_id: str, sample: Any) -> tuple[str, dict[str, str], list[Any], Series]:
        ruleset = rules.current
        found = memo.get(series_id)
        if found is None or found[0] is not ruleset:
            if len(memo) >= MEMO_MAX:
                memo.clear()
            labels = dict(sample.labels)
            found = (
                ruleset,
                sample.name,
                labels,
                ruleset.for_series(sample.name, labels),
                _score_sample_series(sample.name, labels, detector.name),
            )
            memo[series_id] = found
        return found[1], found[2], found[3], found[4]

    async def _score(batch: MetricBatch) -> None:
        by_series: dict[str, list[Any]] = defaultdict(list)
        for sample in batch.samples:
            by_series[sample.series_id].append(sample)
        out: list[NormSample] = []
        for series_id, samples in by_series.items():
            name, labels, matching, score_series_ = _series_info(series_id, samples[0])
            key = series_id.encode()
            scored = score_series(
                detector=detector,
                rules=matching,
                anomaly=anomaly,
                name=name,
                labels=labels,
                samples=sorted((s.ts_ms, s.value) for s in samples),
                state=state.get(key),
            )
            state[key] = scored.state  # one write (and changelog record) per series
            status["scored"] += len(scored.scores)
            scored_total.inc(len(scored.scores))
            if settings.emit_scores and scored.scores:
                out.extend(NormSample(score_series_, ts, score) for ts, score in scored.scores)
            for signal in scored.signals:
                status["signals"] += 1
                _, value, ce_headers = to_kafka(
                    CloudEvent.create(
                        type=ALERT_SIGNAL,
                        source=SOURCE,
                        subject=signal.fingerprint,
                        data=signal.to_json(),
                    )
                )
                await signals.send(key=signal.fingerprint.encode(), value=value, headers=ce_headers)
        if out:
            ce = CloudEvent.create(
                type=t.METRIC_POINTS,
                source=SOURCE,
                subject=SCORE_METRIC,
                datacontenttype=PROTOBUF,
                data=encode_batch(out, source_event_id=f"scores:{time.time_ns()}"),
            )
            _, score_batch, ce_headers = to_kafka(ce)
            await points.send(key=out[0].series_id.encode(), value=score_batch, headers=ce_headers)
            metrics.produced.labels(t.METRICS_POINTS, t.METRIC_POINTS).inc()

    async def _deadletter(message: Any, headers: list[tuple[str, bytes]], reason: str) -> None:
        metrics.failed.labels(message.topic, "?", reason.split(":", 1)[0]).inc()
        log.warning("dead-lettering %s@%d: %s", message.topic, message.offset, reason)
        await deadletter.send(
            key=message.key,
            value=message.value,
            headers=deadletter_headers(
                headers,
                reason=reason,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                service=NAME,
            ),
        )

    app.series_table = state  # type: ignore[attr-defined]
    app.detector_topics = {  # type: ignore[attr-defined]
        "points": points,
        "series": series_topic,
        "signals": signals,
        "deadletter": deadletter,
    }
    app.detector_status = status  # type: ignore[attr-defined]
    app.rules = rules  # type: ignore[attr-defined]
    app.detector = detector  # type: ignore[attr-defined]
    return app
