"""Scraping a real Prometheus node exporter through the platform: register it at the
gateway, find its node_* series and up=1; an HTML page ends up=0 with the reason."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from bench.scrape import pages
from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth, query_until, unique

pytestmark = pytest.mark.e2e

WINDOW = [("start", "2000-01-01T00:00:00Z"), ("end", "2100-01-01T00:00:00Z")]


@pytest.fixture(scope="module")
def node_exporter() -> Iterator[str]:
    if pages.NODE_EXPORTER is None:
        pytest.fail("prometheus-node-exporter is not installed: run tests/system-deps.sh")
    with pages.node_exporter() as url:
        yield url


class _StatusPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!DOCTYPE html><html><body><h1>Service status</h1></body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def html_page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/status"
    server.shutdown()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


async def _target_until(
    client: httpx.AsyncClient, stack: RunningStack, target_id: str, health: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = await client.get(
            f"{stack.stack.gateway_url}/v1/scrape/targets/{target_id}", headers=auth(stack)
        )
        assert r.status_code == 200, r.text
        shown = r.json()
        if shown["health"] == health:
            return shown
        await asyncio.sleep(0.5)
    raise AssertionError(f"target never {health}: {shown}")


async def test_a_node_exporter_is_scraped_into_queryable_series(
    stack: RunningStack, client: httpx.AsyncClient, node_exporter: str
) -> None:
    gateway, job = stack.stack.gateway_url, unique("node")
    body = {
        "job": job,
        "url": node_exporter,
        "interval_s": 2,
        "timeout_s": 1.5,
        "labels": {"env": "e2e"},
    }
    assert (await client.post(f"{gateway}/v1/scrape/targets", json=body)).status_code == 401
    r = await client.post(f"{gateway}/v1/scrape/targets", json=body, headers=auth(stack))
    assert r.status_code == 201, r.text
    target = r.json()
    again = await client.post(f"{gateway}/v1/scrape/targets", json=body, headers=auth(stack))
    assert again.status_code == 409

    shown = await _target_until(client, stack, target["id"], "up")
    assert shown["last_error"] is None and shown["last_samples"] > 100
    assert shown["last_scrape"] is not None

    up = await query_until(
        client,
        stack,
        [("name", "up"), ("match", f"job={job}"), *WINDOW],
        lambda s: any(p[1] == 1 for x in s for p in x["points"]),
        timeout=60,
    )
    assert up[0]["labels"] == {"job": job, "instance": target["instance"], "env": "e2e"}
    r = await client.get(
        f"{gateway}/v1/metrics/series",
        params=[("match", f"job={job}"), ("match", "__name__=~node_.*")],
        headers=auth(stack),
    )
    assert r.status_code == 200, r.text
    names = {s["name"] for s in r.json()["series"]}
    assert {"node_cpu_seconds_total", "node_memory_MemTotal_bytes"} <= names
    assert all(n.startswith("node_") for n in names)
    cpu = await query_until(
        client,
        stack,
        [
            ("name", "node_cpu_seconds_total"),
            ("match", f"job={job}"),
            ("match", "mode=idle"),
            *WINDOW,
        ],
        lambda s: bool(s),
    )
    assert all(x["labels"]["mode"] == "idle" and x["labels"]["env"] == "e2e" for x in cpu)
    listed = await client.get(
        f"{gateway}/v1/scrape/targets", params={"job": job}, headers=auth(stack)
    )
    assert [t["id"] for t in listed.json()["targets"]] == [target["id"]]
    r = await client.delete(f"{gateway}/v1/scrape/targets/{target['id']}", headers=auth(stack))
    assert r.status_code == 204
    gone = await client.get(f"{gateway}/v1/scrape/targets/{target['id']}", headers=auth(stack))
    assert gone.status_code == 404


async def test_an_html_page_is_down_with_a_clear_reason(
    stack: RunningStack, client: httpx.AsyncClient, html_page: str
) -> None:
    gateway, job = stack.stack.gateway_url, unique("status")
    r = await client.post(
        f"{gateway}/v1/scrape/targets",
        json={"job": job, "url": html_page, "interval_s": 2, "timeout_s": 1},
        headers=auth(stack),
    )
    assert r.status_code == 201, r.text
    shown = await _target_until(client, stack, r.json()["id"], "down")
    assert shown["last_error"] == (
        "not Prometheus text format: the target answered 'text/html' "
        "(expected text/plain or application/openmetrics-text)"
    )
    up = await query_until(
        client,
        stack,
        [("name", "up"), ("match", f"job={job}"), *WINDOW],
        lambda s: bool(s) and bool(s[0]["points"]),
    )
    assert {p[1] for p in up[0]["points"]} == {0}
    await client.delete(f"{gateway}/v1/scrape/targets/{r.json()['id']}", headers=auth(stack))


async def test_bad_targets_are_refused_at_the_gateway(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    gateway = stack.stack.gateway_url
    r = await client.post(
        f"{gateway}/v1/scrape/targets",
        json={"job": "x", "url": "http://127.0.0.1:9100/metrics", "interval_s": 5, "timeout_s": 9},
        headers=auth(stack),
    )
    assert r.status_code == 422 and "must be less than interval_s" in r.text
    r = await client.get(f"{gateway}/v1/scrape/targets/nope", headers=auth(stack))
    assert r.status_code == 422
