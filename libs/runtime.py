"""A service process: supervised background tasks, readiness checks, ops routes, serving."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from libs.observability.http import ObservabilityMiddleware
from libs.observability.metrics import get_metrics

log = logging.getLogger(__name__)

TaskFactory = Callable[[asyncio.Event], Awaitable[None]]


class ServiceRuntime:
    """Background work of one service: started in the app's lifespan, stopped on shutdown."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stop = asyncio.Event()
        self._checks: dict[str, Callable[[], bool]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.failures: dict[str, str] = {}

    def check(self, name: str, ready: Callable[[], bool]) -> None:
        """Register a readiness condition (shown by name in /readyz)."""
        self._checks[name] = ready

    def spawn(self, name: str, factory: TaskFactory) -> None:
        """Run factory(stop) until stop; if it crashes, log it and start it again."""
        self._tasks.append(asyncio.create_task(self._supervise(name, factory), name=name))

    async def _supervise(self, name: str, factory: TaskFactory) -> None:
        delay = 1.0
        while not self.stop.is_set():
            try:
                await factory(self.stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures[name] = f"{type(exc).__name__}: {exc}"
                get_metrics().restarts.labels(name).inc()
                log.exception("%s crashed; restarting in %.0fs", name, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
                delay = min(delay * 2, 30.0)

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        states = {}
        for name, fn in self._checks.items():
            try:
                states[name] = bool(fn())
            except Exception:
                states[name] = False
        return all(states.values()), states

    async def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _printable(value: Any) -> Any:
    """A validation error's input as JSON can carry it: bytes that are not UTF-8 (a body
    sent with a content type the route does not read) would fail the answer itself."""
    if isinstance(value, bytes | bytearray):
        return repr(bytes(value[:200]))
    if isinstance(value, dict):
        return {str(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {k: _printable(v) for k, v in error.items() if k in ("type", "loc", "msg", "input")}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


def add_ops_routes(app: FastAPI, runtime: ServiceRuntime) -> None:
    """/healthz (alive), /readyz (every check ready) and /metrics (Prometheus text); and
    422 answers for invalid requests that never fail themselves."""
    app.add_middleware(ObservabilityMiddleware)
    app.add_exception_handler(RequestValidationError, _invalid_request)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.name}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ready, checks = runtime.readiness()
        return JSONResponse(
            {"ready": ready, "service": runtime.name, "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(get_metrics().render(), media_type="text/plain; version=0.0.4")


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; the app's lifespan stops its background work."""
    uvicorn.run(
        app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=10
    )
