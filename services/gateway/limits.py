"""Request limits: a token bucket per API token, and the largest request body.

The buckets live in memory, one set per gateway replica: with N replicas behind a load
balancer a token may make up to N times the rate. That is the price of not putting a
shared store in every request's path; the limit is there to stop a runaway script, not to
meter usage.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BUCKETS = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets by key; the least recently used are forgotten past MAX_BUCKETS."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._clock = clock

    def take(self, key: str, *, rate: float, burst: int) -> float:
        """0 if the request may go now, else the seconds until it may (nothing is taken)."""
        if rate <= 0:
            return 0.0
        now: float = self._clock()  # type: ignore[operator]
        capacity = max(1, burst)
        bucket = self._buckets.pop(key, None) or _Bucket(float(capacity), now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        self._buckets[key] = bucket
        if len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate


def retry_after(seconds: float) -> str:
    """Retry-After is whole seconds; round up so a client that waits it is let through."""
    return str(max(1, math.ceil(seconds)))


class BodyLimitMiddleware:
    """413 for a body over the limit, before any route reads it (declared or streamed)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _refuse(send, 400, "Content-Length is not a number")
                return
            if int(declared) > self.max_bytes:
                await _refuse(send, 413, f"request body is larger than {self.max_bytes} bytes")
                return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(413, f"request body is larger than {self.max_bytes} bytes")
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _TooLarge:
            if not started:
                await _refuse(send, 413, f"request body is larger than {self.max_bytes} bytes")


class _TooLarge(HTTPException):
    """An HTTPException, so a route reading the body answers 413 through the usual path."""


async def _refuse(send: Send, status: int, detail: str) -> None:
    import orjson

    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
