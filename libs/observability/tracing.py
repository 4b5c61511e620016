"""OpenTelemetry tracing whose context crosses HTTP and Kafka (W3C traceparent)."""

from __future__ import annotations

import os

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_configured = False


def setup_tracing(service_name: str) -> None:
    """Install a tracer provider; export OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=500)
        )
    trace.set_tracer_provider(provider)
    _configured = True


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def tracer(name: str = "opsline") -> trace.Tracer:
    return trace.get_tracer(name)


def kafka_headers_for_current_span() -> list[tuple[str, bytes]]:
    """traceparent (and tracestate) of the current context, as Kafka headers."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


def context_from_kafka(headers: list[tuple[str, bytes]]) -> otel_context.Context:
    carrier = {}
    for key, value in headers:
        if key in ("traceparent", "tracestate") and value:
            try:
                carrier[key] = value.decode()
            except UnicodeDecodeError:
                continue
    return extract(carrier)


def context_from_http(headers: dict[str, str]) -> otel_context.Context:
    return extract(headers)
