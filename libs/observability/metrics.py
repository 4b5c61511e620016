"""Prometheus metrics every service exports on /metrics."""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    """The metric families of one service process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.consumed = Counter(
            "opsline_events_consumed", "Events consumed", ["topic", "type"], registry=registry
        )
        self.produced = Counter(
            "opsline_events_produced", "Events produced", ["topic", "type"], registry=registry
        )
        self.failed = Counter(
            "opsline_events_failed",
            "Events rejected (dead-lettered) or failed, by reason kind",
            ["topic", "type", "reason"],
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "opsline_handler_seconds",
            "Time to handle one consumed batch",
            ["topic"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "opsline_consumer_lag",
            "Messages behind the end of the partition",
            ["topic", "partition"],
            registry=registry,
        )
        self.http_seconds = Histogram(
            "opsline_http_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.samples = Counter(
            "opsline_samples",
            "Metric samples by outcome (accepted, rejected, stale: staleness markers dropped)",
            ["outcome"],
            registry=registry,
        )
        self.remote_write_requests = Counter(
            "opsline_remote_write_requests",
            "Prometheus remote_write requests by outcome (accepted, rejected, unavailable)",
            ["outcome", "code"],
            registry=registry,
        )
        self.remote_write_samples = Counter(
            "opsline_remote_write_samples",
            "Samples in remote_write requests by outcome (accepted: handed to Kafka)",
            ["outcome"],
            registry=registry,
        )
        self.restarts = Counter(
            "opsline_worker_restarts",
            "Worker loop restarts after an error",
            ["worker"],
            registry=registry,
        )
        self.samples_scored = Counter(
            "opsline_samples_scored",
            "Samples the anomaly detector scored, by detector",
            ["detector"],
            registry=registry,
        )
        self.alert_changes = Counter(
            "opsline_alert_changes",
            "Alert and incident lifecycle changes (raised, updated, resolved, opened, …)",
            ["change"],
            registry=registry,
        )
        self.notifications = Counter(
            "opsline_notifications",
            "Notifications sent to receivers, by receiver kind and outcome (sent, failed)",
            ["kind", "outcome"],
            registry=registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


@lru_cache(maxsize=1)
def get_metrics() -> ServiceMetrics:
    """The process-wide metrics, in prometheus-client's default registry."""
    return ServiceMetrics(DEFAULT_REGISTRY)
