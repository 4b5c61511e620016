"""A stand-in gateway for the client and CLI tests.

It implements just the /v1 routes of the client's contract, with canned answers that depend
on the input: a build goes QUEUED → RUNNING → SUCCEEDED over successive GETs (a build of
the component "broken" FAILS instead), events from the source "flaky" are refused once with
503, and every request is recorded so a test can say what the server saw.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
import yaml
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

TOKEN = "opl_test_token"
DIGEST = "sha256:" + "ab12cd34ef56" + "0" * 52


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeState:
    requests: list[Seen] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)
    market: list[dict[str, Any]] = field(default_factory=list)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def paths(self) -> list[str]:
        return [f"{s.method} {s.path}" for s in self.requests]


STREAM_EVENTS = [
    {"type": "io.opsline.build.started", "subject": "hello", "id": "e1"},
    {"type": "com.example.ci.finished", "subject": "shop", "id": "e2"},
    {"type": "io.opsline.build.succeeded", "subject": "hello", "id": "e3"},
]


def create_app(state: FakeState) -> FastAPI:
    async def record(request: Request) -> None:
        state.requests.append(
            Seen(
                request.method,
                request.url.path,
                request.url.query,
                dict(request.headers),
                await request.body(),
            )
        )
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            raise HTTPException(401, "invalid, expired or revoked token")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(record)])

    @v1.post("/events", status_code=202)
    async def post_events(request: Request) -> Any:
        kind = request.headers.get("content-type", "")
        body = json.loads(await request.body())
        if kind == "application/cloudevents+json":
            items = [body]
        elif kind == "application/cloudevents-batch+json":
            items = body
        else:
            raise HTTPException(415, "send application/cloudevents+json or a batch")
        if all(item.get("source") == "bad" for item in items):
            rejected = [
                {"index": i, "id": item["id"], "reason": "samples[0].value: not a number (str)"}
                for i, item in enumerate(items)
            ]
            return JSONResponse(
                {"detail": "no event accepted", "accepted": [], "rejected": rejected}, 422
            )
        for item in items:
            if item.get("source") == "flaky":
                state.attempts[item["id"]] = state.attempts.get(item["id"], 0) + 1
                if state.attempts[item["id"]] == 1:
                    raise HTTPException(503, "could not hand the events to Kafka: timed out")
        state.published.extend(items)
        return {"accepted": [item["id"] for item in items], "rejected": []}

    @v1.get("/metrics/query")
    async def metrics_query(
        name: str, start: str, end: str, match: list[str] = Query(default=[])
    ) -> Any:
        labels = dict(m.split("=", 1) for m in match)
        return {"series": [{"name": name, "labels": labels, "points": [[start, 1.0], [end, 2.0]]}]}

    @v1.get("/events/stream")
    async def events_stream(
        type: list[str] = Query(default=[]), subject: str | None = None
    ) -> StreamingResponse:
        def frames() -> Iterator[bytes]:
            yield b": connected\n\n"
            for event in STREAM_EVENTS:
                if type and not event["type"].startswith(tuple(type)):
                    continue
                if subject is not None and event["subject"] != subject:
                    continue
                full = {"specversion": "1.0", "source": "build", **event, "data": {"n": 1}}
                # The data spread over two lines (as SSE allows), and CRLF endings.
                text = json.dumps(full, indent=None).replace(', "data"', ',\ndata: "data"')
                frame = f"id: {event['id']}\r\nevent: {event['type']}\r\ndata: {text}\r\n\r\n"
                yield frame.encode()
                yield b": keep-alive\n\n"
            if "error" in type:
                yield b'event: error\ndata: {"detail": "client too slow; reconnect"}\n\n'

        return StreamingResponse(frames(), media_type="text/event-stream")

    @v1.post("/apps:apply")
    async def apply_app(request: Request) -> Any:
        doc = yaml.safe_load(await request.body())
        if doc.get("kind") != "App":
            errors = ["line 2, column 7: kind: must be App"]
            raise HTTPException(422, {"message": "invalid opsline.yaml", "errors": errors})
        name = doc["meta"]["name"]
        old = state.apps.get(name)
        state.apps[name] = doc
        before, after = dict(_flatten(old or {})), dict(_flatten(doc))
        changes = [
            {"path": p, "old": before.get(p), "new": after.get(p)}
            for p in sorted(before.keys() | after.keys())
            if before.get(p) != after.get(p)
        ]
        action = "created" if old is None else ("updated" if changes else "unchanged")
        return {"app": name, "action": action, "changes": changes}

    @v1.get("/apps")
    async def list_apps() -> Any:
        return {
            "apps": [
                {
                    "name": name,
                    "team": doc["meta"].get("team"),
                    "description": doc["meta"].get("description"),
                    "components": doc.get("components", []),
                    "updated_at": "2026-11-21T12:00:00.250000Z",
                }
                for name, doc in state.apps.items()
            ]
        }

    @v1.get("/apps/{app}")
    async def get_app(app: str) -> Any:
        if app not in state.apps:
            raise HTTPException(404, f"app {app!r} not found")
        return {"name": app, **state.apps[app]["meta"]}

    @v1.post("/apps/{app}/builds", status_code=202)
    async def start_build(app: str, request: Request) -> Any:
        body = json.loads(await request.body() or b"{}")
        build_id = f"b-{len(state.builds) + 1}"
        version = body.get("version") or len(state.builds) + 1
        state.builds[build_id] = {
            "app": app,
            "version": version,
            "broken": body.get("component") == "broken",
            "polls": 0,
            "cancelled": False,
        }
        return {"build_id": build_id, "version": version, "status": "QUEUED"}

    @v1.get("/builds/{build_id}")
    async def get_build(build_id: str) -> Any:
        build = state.builds.get(build_id)
        if build is None:
            raise HTTPException(404, f"build {build_id} not found")
        build["polls"] += 1
        return _build_view(build_id, build)

    @v1.post("/builds/{build_id}/cancel", status_code=202)
    async def cancel_build(build_id: str) -> Any:
        state.builds[build_id]["cancelled"] = True
        return {"id": build_id, "status": "CANCELLED"}

    @v1.get("/apps/{app}/packages")
    async def list_packages(app: str) -> Any:
        artifact = {
            "component": "web",
            "kind": "tar.gz",
            "uri": f"file:///store/{app}/web.tar.gz",
            "digest": DIGEST,
            "size": 2048,
        }
        package = {"version": 1, "build_id": "b-1", "created_at": "2026-11-21T12:00:00Z"}
        return {"packages": [{**package, "artifacts": [artifact]}]}

    @v1.post("/market/publish")
    async def market_publish(request: Request) -> Any:
        body = json.loads(await request.body())
        state.market.append({**body, "published_at": "2026-11-21T12:00:00Z"})
        return {"app": body["app"], "version": body["version"], "market": body["market"]}

    @v1.get("/market")
    async def market_list(market: str) -> Any:
        keys = ("app", "version", "published_at")
        return {
            "packages": [{k: p[k] for k in keys} for p in state.market if p["market"] == market]
        }

    @v1.post("/market/install")
    async def market_install(request: Request) -> Any:
        body = json.loads(await request.body())
        if not any(p["app"] == body["app"] for p in state.market):
            raise HTTPException(404, f"{body['app']} {body['version']} is not in {body['market']}")
        return {"app": body["app"], "version": body["version"], "action": "installed"}

    app = FastAPI()
    app.include_router(v1)
    return app


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def _build_view(build_id: str, build: dict[str, Any]) -> dict[str, Any]:
    polls, broken = build["polls"], build["broken"]
    fetch = {"component": "web", "step": "fetch", "status": "PENDING", "log": []}
    package = {"component": "web", "step": "package", "status": "PENDING", "log": []}
    status, reason, artifacts = "QUEUED", None, []
    if polls >= 2:
        status = "RUNNING"
        fetch.update(status="RUNNING", log=["copying ./src"])
    if polls >= 3:
        fetch.update(status="SUCCEEDED", log=["copying ./src", "2 files, 1.2 KiB"])
        package.update(status="RUNNING", log=["packing web.tar.gz"])
    if polls >= 4:
        if broken:
            status, reason = "FAILED", "web/package: exit code 2: no such file app.py"
            package.update(status="FAILED", log=["packing web.tar.gz", "no such file app.py"])
        else:
            status = "SUCCEEDED"
            package.update(status="SUCCEEDED", log=["packing web.tar.gz", f"wrote {DIGEST}"])
            artifacts = [{"component": "web", "kind": "tar.gz", "digest": DIGEST, "size": 2048}]
    if build["cancelled"]:
        status, reason = "CANCELLED", "cancelled by the user"
    return {
        "id": build_id,
        "app": build["app"],
        "version": build["version"],
        "status": status,
        "steps": [fetch, package],
        "artifacts": artifacts,
        "reason": reason,
    }


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free port in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake gateway did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
