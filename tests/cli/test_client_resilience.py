"""OpslineClient against a scripted HTTP server: retries (429 with Retry-After, 503,
dropped connections), batches split under the body limit, metric queries with step and
agg, and a followed stream that resumes with Last-Event-ID after each kind of break.

The server is real HTTP on a local port; each request takes the next scripted answer.
Sleeps go through the client's `sleep` hook, so the waits it chose are asserted, not timed.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from opsline.client import OpslineClient, OpslineError

Answer = Callable[["_Handler"], None]


@dataclass
class Seen:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str
    script: deque[Answer] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)

    def then(self, *answers: Answer) -> Server:
        self.script.extend(answers)
        return self

    def events_sent(self) -> list[list[dict[str, Any]]]:
        return [json.loads(s.body) for s in self.seen if s.path == "/v1/events"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: Server

    def _any(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        url = urlsplit(self.path)
        self.server_state.seen.append(
            Seen(
                self.command,
                url.path,
                parse_qsl(url.query, keep_blank_values=True),
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length),
            )
        )
        script = self.server_state.script
        answer = script.popleft() if script else reply(500, {"detail": "unscripted"})
        answer(self)
        self.close_connection = True

    do_GET = do_POST = _any

    def log_message(self, *args: object) -> None:
        pass


def reply(status: int, body: Any, **headers: str) -> Answer:
    def answer(h: _Handler) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Connection", "close")  # each request its own connection: counted
        for name, value in headers.items():
            h.send_header(name.replace("_", "-"), value)
        h.end_headers()
        h.wfile.write(data)

    return answer


def accept_all() -> Answer:
    """202 with every event of the request accepted, as the gateway says it."""

    def answer(h: _Handler) -> None:
        sent = json.loads(h.server_state.seen[-1].body)
        events = sent if isinstance(sent, list) else [sent]
        reply(202, {"accepted": [e["id"] for e in events], "rejected": []})(h)

    return answer


def drop() -> Answer:
    """Close the connection without an answer."""

    def answer(h: _Handler) -> None:
        h.wfile.flush()
        h.connection.close()

    return answer


def sse(*frames: str, end: str = "close") -> Answer:
    """A text/event-stream, chunked; then a clean end ("close") or a cut ("break")."""

    def answer(h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Connection", "close")
        h.end_headers()
        for frame in (": connected\n\n", *frames):
            data = frame.encode()
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        if end == "close":
            h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()
        h.connection.close()

    return answer


def event(event_id: str, kind: str = "com.example.x") -> str:
    body = {"specversion": "1.0", "id": event_id, "type": kind, "source": "t", "data": {}}
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(body)}\n\n"


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    state = Server(f"http://127.0.0.1:{httpd.server_address[1]}")
    _Handler.server_state = state
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def waits() -> list[float]:
    return []


def client(server: Server, waits: list[float], **kwargs: Any) -> OpslineClient:
    return OpslineClient(server.url, "t", env={}, retry_backoff=0.5, sleep=waits.append, **kwargs)


# publishing: retries


def test_publish_waits_what_retry_after_asks_then_backs_off(
    server: Server, waits: list[float]
) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server.then(
        reply(429, {"detail": "rate limit"}, Retry_After="7"),
        reply(429, {"detail": "rate limit"}, Retry_After=later),
        reply(503, {"detail": "could not hand the events to Kafka"}),
        drop(),
        accept_all(),
    )
    with client(server, waits) as ops:
        result = ops.publish("com.example.x", "ci", {"n": 1}, id="evt-1")
    assert result == {"accepted": ["evt-1"], "rejected": []}
    assert [e["id"] for e in server.events_sent()] == ["evt-1"] * 5
    assert waits[0] == 7
    assert 25 < waits[1] <= 30  # an HTTP date: the time until then
    assert 1.0 <= waits[2] <= 2.0  # no Retry-After: 0.5 · 2², with jitter down to half
    assert 2.0 <= waits[3] <= 4.0


def test_retry_after_is_capped_and_attempts_run_out(server: Server, waits: list[float]) -> None:
    server.then(*[reply(503, {"detail": "away"}, Retry_After="3600")] * 3)
    with client(server, waits, publish_attempts=3, max_retry_wait=20) as ops:
        with pytest.raises(OpslineError) as caught:
            ops.publish("com.example.x", "ci", {})
    assert (caught.value.status, caught.value.detail) == (503, "away")
    assert waits == [20, 20]
    assert len(server.seen) == 3


def test_a_refusal_is_not_retried(server: Server, waits: list[float]) -> None:
    server.then(reply(403, {"detail": "not allowed to publish for app 'shop'"}))
    with client(server, waits) as ops, pytest.raises(OpslineError, match="not allowed"):
        ops.publish("com.example.x", "ci", {"app": "shop"})
    assert len(server.seen) == 1 and waits == []


def test_other_calls_are_not_retried(server: Server, waits: list[float]) -> None:
    server.then(reply(503, {"detail": "appmanager unreachable"}))
    with client(server, waits) as ops, pytest.raises(OpslineError, match="HTTP 503"):
        ops.start_build("shop")  # not idempotent: the caller decides
    assert len(server.seen) == 1


# publishing: batches


def _events(n: int, size: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": f"e{i}", "type": "com.example.x", "source": "s", "data": {"pad": "x" * size}}
        for i in range(n)
    ]


def test_a_large_batch_is_split_under_the_body_limit(server: Server, waits: list[float]) -> None:
    server.then(*[accept_all()] * 20)
    with client(server, waits, max_batch_bytes=10_000) as ops:
        result = ops.publish_batch(_events(40, size=900))
    bodies = [s.body for s in server.seen]
    assert len(bodies) >= 4
    assert all(len(b) <= 10_000 for b in bodies)
    assert all(
        s.headers["content-type"] == "application/cloudevents-batch+json" for s in server.seen
    )
    sent = [e["id"] for batch in server.events_sent() for e in batch]
    assert sent == [f"e{i}" for i in range(40)]
    assert result["accepted"] == sent


def test_a_413_halves_the_request(server: Server, waits: list[float]) -> None:
    def gateway(h: _Handler) -> None:
        if len(h.server_state.seen[-1].body) > 5_000:
            reply(413, {"detail": "request body is larger than 5000 bytes"})(h)
        else:
            accept_all()(h)

    server.then(*[gateway] * 20)
    with client(server, waits) as ops:  # the client's own limit is far larger
        result = ops.publish_batch(_events(16, size=900))
    assert result["accepted"] == [f"e{i}" for i in range(16)]
    assert len(server.seen[0].body) > 5_000
    taken = [json.loads(s.body) for s in server.seen if len(s.body) <= 5_000]
    assert [e["id"] for batch in taken for e in batch] == [f"e{i}" for i in range(16)]


def test_rejections_point_into_the_whole_batch(server: Server, waits: list[float]) -> None:
    def gateway(h: _Handler) -> None:
        batch = json.loads(h.server_state.seen[-1].body)
        good = [e["id"] for e in batch if not e["data"].get("bad")]
        bad = [
            {"index": i, "id": e["id"], "reason": "samples[0].value: not a number"}
            for i, e in enumerate(batch)
            if e["data"].get("bad")
        ]
        if good:
            reply(202, {"accepted": good, "rejected": bad})(h)
        else:
            reply(400, {"detail": "no event accepted", "accepted": [], "rejected": bad})(h)

    events = _events(6, size=400)
    for i in (1, 4, 5):
        events[i]["data"]["bad"] = True
    server.then(*[gateway] * 5)
    with client(server, waits, max_batch_bytes=1_300) as ops:
        result = ops.publish_batch(events)
    assert len(server.seen) == 3  # two events a request: the last one all refused (400)
    assert result["accepted"] == ["e0", "e2", "e3"]
    assert [(r["index"], r.get("id")) for r in result["rejected"]] == [
        (1, "e1"),
        (4, "e4"),
        (5, "e5"),
    ]


def test_a_failed_request_says_what_got_in_before(server: Server, waits: list[float]) -> None:
    server.then(accept_all(), reply(401, {"detail": "invalid, expired or revoked token"}))
    with client(server, waits, max_batch_bytes=1_000) as ops, pytest.raises(OpslineError) as caught:
        ops.publish_batch(_events(4, size=400))
    assert caught.value.status == 401
    assert caught.value.accepted == ["e0", "e1"]


def test_an_event_over_the_limit_alone(server: Server, waits: list[float]) -> None:
    server.then(accept_all(), reply(413, {"detail": "request body is larger than 5000 bytes"}))
    with client(server, waits, max_batch_bytes=5_000) as ops, pytest.raises(OpslineError) as caught:
        ops.publish_batch([*_events(1), {"type": "t", "source": "s", "data": "x" * 6_000}])
    assert caught.value.status == 413
    assert "event #1 is larger than the gateway's body limit" in caught.value.detail
    assert caught.value.accepted == ["e0"]


def test_all_refused_raises_with_the_reasons(server: Server, waits: list[float]) -> None:
    refused = {"index": 0, "id": "e0", "reason": "invalid CloudEvent: no type"}
    server.then(reply(400, {"detail": "no event accepted", "accepted": [], "rejected": [refused]}))
    with client(server, waits) as ops, pytest.raises(OpslineError) as caught:
        ops.publish_batch(_events(1))
    assert str(caught.value) == "HTTP 400: no event accepted: event e0: invalid CloudEvent: no type"


# metrics


def test_query_metrics_with_step_and_agg(server: Server, waits: list[float]) -> None:
    series = [{"name": "cpu", "labels": {"app": "shop"}, "points": [["2026-11-21T12:00:00Z", 1]]}]
    server.then(reply(200, {"series": series, "step": 300, "agg": "max"}))
    start = datetime(2026, 11, 21, 12, tzinfo=UTC)
    with client(server, waits) as ops:
        got = ops.query_metrics(
            "cpu", start, match=["app=shop", "pod=~web-.*"], step=timedelta(minutes=5), agg="max"
        )
    assert got == series
    query = server.seen[0].query
    assert ("start", "2026-11-21T12:00:00.000Z") in query
    assert ("step", "300s") in query and ("agg", "max") in query
    assert [v for k, v in query if k == "match"] == ["app=shop", "pod=~web-.*"]
    end = datetime.fromisoformat(dict(query)["end"])  # defaults to now
    assert abs((end - datetime.now(UTC)).total_seconds()) < 60


# the live stream


def test_follow_resumes_after_every_kind_of_break(server: Server, waits: list[float]) -> None:
    server.then(
        sse(event("e1"), event("e2"), end="break"),  # the connection is cut
        sse(event("e3"), 'event: error\ndata: {"detail": "client too slow; reconnect"}\n\n'),
        reply(503, {"detail": "restarting"}, Retry_After="2"),
        drop(),  # the gateway is away
        sse('event: missed\ndata: {"detail": "some were missed"}\n\n', event("e4")),
    )
    missed: list[str] = []
    got: list[str] = []
    with client(server, waits) as ops:
        for item in ops.follow_events(["com.example."], app="shop", on_missed=missed.append):
            got.append(item["id"])
            if len(got) == 4:
                break
    assert got == ["e1", "e2", "e3", "e4"]
    streams = [s for s in server.seen if s.path == "/v1/events/stream"]
    assert [s.headers.get("last-event-id") for s in streams] == [None, "e2", "e3", "e3", "e3"]
    assert all(("type", "com.example.") in s.query and ("app", "shop") in s.query for s in streams)
    assert 2 in waits  # Retry-After honoured
    assert missed and "some were missed" in missed[0]


def test_follow_gives_up_at_once_on_a_refusal(server: Server, waits: list[float]) -> None:
    server.then(reply(401, {"detail": "invalid, expired or revoked token"}))
    with client(server, waits) as ops, pytest.raises(OpslineError) as caught:
        next(ops.follow_events())
    assert caught.value.status == 401 and waits == []


def test_follow_gives_up_after_attempts_failures_in_a_row(
    server: Server, waits: list[float]
) -> None:
    server.then(sse(event("e1")), drop(), drop())
    with client(server, waits) as ops:
        stream = ops.follow_events(attempts=3)
        assert next(stream)["id"] == "e1"
        with pytest.raises(OpslineError, match="cannot reach the gateway"):
            next(stream)
    assert len(server.seen) == 3
    assert len(waits) == 2  # after the clean end, after the first failed connection
