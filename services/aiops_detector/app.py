"""aiops-detector: a faust app over metrics.points with per-series state in a faust table."""

from __future__ import annotations

import logging
from typing import Any

import faust
from google.protobuf.message import DecodeError
from opentelemetry import trace

from libs.config import CommonSettings
from libs.events import topics as t
from libs.events.deadletter import deadletter_headers
from libs.events.envelope import EnvelopeError, from_kafka
from libs.observability.metrics import get_metrics
from libs.observability.tracing import context_from_kafka, tracer
from libs.schemas.opsline.v1.metrics_pb2 import MetricBatch
from services.aiops_detector.detector import update_stats
from services.aiops_detector.settings import DetectorSettings

NAME = "aiops-detector"
log = logging.getLogger(__name__)


def create_app(settings: DetectorSettings, common: CommonSettings) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{h}" for h in common.kafka_bootstrap.split(",")],
        store=settings.store,
        datadir=str(common.home / NAME),
        web_host=settings.host,
        web_port=settings.port,
        topic_partitions=common.topic_partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
    )
    points = app.topic(
        t.METRICS_POINTS,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    deadletter = app.topic(t.DEADLETTER, key_serializer="raw", value_serializer="raw")
    stats = app.Table("series_stats", default=None, partitions=common.topic_partitions)
    metrics = get_metrics()
    status = {"assigned": False}

    @app.on_partitions_assigned.connect
    async def _assigned(*_args: Any, **_kwargs: Any) -> None:
        status["assigned"] = True

    @app.agent(points)
    async def score_points(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            headers = [(k, v) for k, v in (message.headers or [])]
            with tracer().start_as_current_span(
                "detect", context=context_from_kafka(headers), kind=trace.SpanKind.CONSUMER
            ):
                try:
                    ce = from_kafka(message.value, headers)
                    batch = MetricBatch()
                    batch.ParseFromString(ce.data)
                except (EnvelopeError, DecodeError) as exc:
                    await _deadletter(message, headers, f"undecodable metric batch: {exc}")
                    continue
                metrics.consumed.labels(t.METRICS_POINTS, ce.type).inc()
                try:
                    for sample in batch.samples:
                        stats[sample.series_id] = update_stats(
                            stats.get(sample.series_id), sample.value, sample.ts_ms
                        )
                except Exception as exc:  # a poison batch must not stop the agent
                    log.exception("detector failed on %s@%d", message.topic, message.offset)
                    await _deadletter(
                        message, headers, f"handler failed: {type(exc).__name__}: {exc}"
                    )

    async def _deadletter(message: Any, headers: list[tuple[str, bytes]], reason: str) -> None:
        metrics.failed.labels(t.METRICS_POINTS, "?", reason.split(":", 1)[0]).inc()
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

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "service": NAME})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = status["assigned"] and not app.rebalancing
        return web.json(
            {
                "ready": ready,
                "service": NAME,
                "checks": {"kafka": status["assigned"], "rebalanced": not app.rebalancing},
            },
            status=200 if ready else 503,
        )

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    app.stats_table = stats  # type: ignore[attr-defined]
    return app
