"""ASGI middleware: request latency histogram and a server span per request."""

from __future__ import annotations

import time

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.observability.metrics import get_metrics
from libs.observability.tracing import context_from_http, tracer

_UNTRACED = {"/healthz", "/readyz", "/metrics"}


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.metrics = get_metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            if path in _UNTRACED:
                await self.app(scope, receive, send_wrapper)
            else:
                headers = {
                    k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])
                }
                with tracer().start_as_current_span(
                    f"{scope['method']} {path}",
                    context=context_from_http(headers),
                    kind=trace.SpanKind.SERVER,
                    attributes={"http.request.method": scope["method"], "url.path": path},
                ) as span:
                    await self.app(scope, receive, send_wrapper)
                    span.set_attribute("http.response.status_code", status["code"])
        finally:
            route = _route_template(scope)
            self.metrics.http_seconds.labels(scope["method"], route, str(status["code"])).observe(
                time.perf_counter() - started
            )


def _route_template(scope: Scope) -> str:
    """The route's path template (low cardinality), or 'unmatched'."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
