"""The embedded stack, started once per test session (real broker, store, six services)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from libs.testing.k8s_double import K8sDouble
from libs.testing.stack import RunningStack, start_stack
from tests.dbservers import mariadb_server, postgres_server  # noqa: F401  (shared fixtures)
from tests.s3server import aws_env, s3_endpoint  # noqa: F401  (shared fixtures)

PORT_OFFSET = int(os.environ.get("OPSLINE_TEST_PORT_OFFSET", "10000"))


class SpanSink:
    """An OTLP/HTTP trace receiver: what the services export, decoded."""

    def __init__(self) -> None:
        self.spans: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def add(self, body: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            for rs in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in rs.resource.attributes
                        if a.key == "service.name"
                    ),
                    "?",
                )
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self.spans.append(
                            {"service": service, "name": span.name, "trace_id": span.trace_id.hex()}
                        )


@pytest.fixture(scope="session")
def span_sink() -> Iterator[tuple[SpanSink, str]]:
    sink = SpanSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path.endswith("/v1/traces"):
                sink.add(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield sink, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def k8s() -> Iterator[K8sDouble]:
    """The Kubernetes API double the stack's deploy service knows as cluster "k8s"."""
    double = K8sDouble.start(rollout_seconds=0.3, deadline_scale=0.003)
    yield double
    double.stop()


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, span_sink: tuple[SpanSink, str], k8s: K8sDouble
) -> Iterator[RunningStack]:
    home: Path = tmp_path_factory.mktemp("opsline-home")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": span_sink[1],
        "OPSLINE_LOG_LEVEL": "INFO",
        # a killed build worker's build is taken back within seconds, not the default 30
        "OPSLINE_BUILD_HEARTBEAT_S": "1",
        "OPSLINE_BUILD_HEARTBEAT_TIMEOUT_S": "6",
        "OPSLINE_APPMANAGER_MARKET_ROOTS": str(home / "markets"),
        "OPSLINE_DEPLOY_DRIFT_INTERVAL_S": "1",
        # and so is a killed deploy worker's deployment
        "OPSLINE_DEPLOY_HEARTBEAT_S": "1",
        "OPSLINE_DEPLOY_HEARTBEAT_TIMEOUT_S": "6",
    }
    os.environ.pop("OPSLINE_ADMIN_TOKEN", None)
    running = start_stack(home, port_offset=PORT_OFFSET, env=env)
    running.register_cluster("k8s", k8s.kubeconfig(home / "k8s.kubeconfig"))
    yield running
    running.stop()
