"""The scraper's parts: exposition parsing, labels, sharding, target validation, and one
scrape against real HTTP servers (a page, an HTML page, a 500, a slow one)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from pydantic import ValidationError

from services.dataops_ingest import exposition, scrape
from services.dataops_ingest.models import ScrapeTarget, ScrapeTargetCreate, instance_of

PAGE = """\
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1234.5
node_cpu_seconds_total{cpu="0",mode="user",} 56.25
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1"} 3
http_request_duration_seconds_bucket{le="+Inf"} 5
http_request_duration_seconds_sum 0.75
http_request_duration_seconds_count 5
weird{path="a\\"b\\\\c{}",job="exporter"} -Inf
go_gc_duration_seconds{quantile="0.5"} NaN
stamped_total 7 1700000000000
"""


# --- exposition ----------------------------------------------------------------------------


def test_parse_reads_every_sample_with_labels_escapes_and_timestamps() -> None:
    samples = exposition.parse(PAGE)
    assert [s.name for s in samples][:3] == [
        "node_cpu_seconds_total",
        "node_cpu_seconds_total",
        "http_request_duration_seconds_bucket",
    ]
    assert samples[1].labels == {"cpu": "0", "mode": "user"}
    assert samples[3].labels == {"le": "+Inf"} and samples[3].value == 5
    weird = next(s for s in samples if s.name == "weird")
    assert weird.labels == {"path": 'a"b\\c{}', "job": "exporter"}
    assert weird.value == -math.inf
    assert math.isnan(next(s for s in samples if s.name == "go_gc_duration_seconds").value)
    stamped = samples[-1]
    assert (stamped.value, stamped.ts_ms) == (7, 1_700_000_000_000)


@pytest.mark.parametrize(
    ("page", "where"),
    [
        ("<!DOCTYPE html>\n<html><body>hi</body></html>", "line 1"),
        ("ok 1\nbad{a=b} 1\n", "line 2: malformed label"),
        ("ok 1\nnovalue\n", "line 2: expected a value"),
        ('dup{a="1",a="2"} 1\n', "appears twice"),
        ("x 1 2 3\n", "expected a value"),
        ("x abc\n", "is not a number"),
        ("# TYPE x flavour\n", "malformed TYPE"),
        ('open{a="1" 1\n', "unclosed label set"),
    ],
)
def test_parse_rejects_what_is_not_the_format(page: str, where: str) -> None:
    with pytest.raises(exposition.ParseError, match=where):
        exposition.parse(page)


def test_content_types_that_cannot_carry_an_exposition_are_refused() -> None:
    exposition.check_content_type("text/plain; version=0.0.4; charset=utf-8")
    exposition.check_content_type("application/openmetrics-text; version=1.0.0")
    exposition.check_content_type("")
    for media in ("text/html; charset=utf-8", "application/json"):
        with pytest.raises(exposition.ParseError, match="not Prometheus text format"):
            exposition.check_content_type(media)


# --- labels --------------------------------------------------------------------------------


def test_target_labels_win_and_the_page_labels_become_exported_ones() -> None:
    page = {"job": "inner", "instance": "x:1", "mode": "idle", "empty": ""}
    target = {"job": "node", "instance": "h:9100", "env": "prod"}
    assert scrape.merge_labels(page, target, honor=False) == {
        "exported_job": "inner",
        "exported_instance": "x:1",
        "mode": "idle",
        "job": "node",
        "instance": "h:9100",
        "env": "prod",
    }
    assert scrape.merge_labels(page, target, honor=True) == {
        "job": "inner",
        "instance": "x:1",
        "mode": "idle",
        "env": "prod",
    }


def _spec(url: str = "http://127.0.0.1:9100/metrics", **kw: object) -> scrape.TargetSpec:
    row = ScrapeTarget(
        id=str(kw.pop("id", "00000000-0000-0000-0000-000000000001")),
        job="node",
        url=url,
        interval_s=float(kw.pop("interval_s", 5.0)),
        timeout_s=float(kw.pop("timeout_s", 2.0)),
        labels='{"env": "prod"}',
        app=kw.pop("app", "shop"),  # type: ignore[arg-type]
    )
    return scrape.TargetSpec.of(row)


def test_samples_carry_job_instance_target_labels_and_app_and_bad_values_are_refused() -> None:
    spec = _spec()
    taken, refused = scrape.to_samples(exposition.parse(PAGE), spec, now_ms=1_700_000_100_000)
    assert len(taken) == len(exposition.parse(PAGE)) - 2  # -Inf and NaN are not accepted
    assert len(refused) == 2 and all("NaN and infinity" in r for r in refused)
    first = taken[0]
    assert first.labels == {
        "cpu": "0",
        "mode": "idle",
        "job": "node",
        "instance": "127.0.0.1:9100",
        "env": "prod",
        "app": "shop",
    }
    assert first.ts_ms == 1_700_000_100_000
    assert taken[-1].ts_ms == 1_700_000_000_000  # the page's own timestamp is kept


def test_health_series_are_up_duration_and_samples_scraped() -> None:
    series = scrape.health_samples(_spec(), up=False, duration_s=0.25, scraped=0, now_ms=1000)
    assert {s.name: s.value for s in series} == {
        "up": 0.0,
        "scrape_duration_seconds": 0.25,
        "scrape_samples_scraped": 0.0,
    }
    assert all(s.labels["job"] == "node" for s in series)


# --- sharding ------------------------------------------------------------------------------


def test_each_target_is_owned_by_exactly_one_holder_of_the_partitions() -> None:
    rows = [
        ScrapeTarget(id=f"00000000-0000-0000-0000-{i:012d}", job="j", url=f"http://h:{i + 1}/m")
        for i in range(400)
    ]
    a = scrape.owned(rows, {0, 2}, 4)
    b = scrape.owned(rows, {1, 3}, 4)
    assert {r.id for r in a}.isdisjoint({r.id for r in b})
    assert len(a) + len(b) == 400
    assert 100 < len(a) < 300  # the hash spreads targets over partitions
    assert scrape.shard_of(rows[7].id, 4) == scrape.shard_of(rows[7].id, 4)
    assert scrape.owned(rows, set(), 4) == []


# --- target validation ---------------------------------------------------------------------


def test_a_target_with_an_empty_path_scrapes_metrics() -> None:
    spec = ScrapeTargetCreate(job="node", url="http://10.0.0.1:9100")
    assert spec.url == "http://10.0.0.1:9100/metrics"
    assert instance_of(spec.url) == "10.0.0.1:9100"
    assert instance_of("https://example.com/m") == "example.com:443"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"url": "ftp://h/metrics"}, "scheme must be http or https"),
        ({"url": "http:///metrics"}, "a host is required"),
        ({"url": "http://user:pw@h:1/m"}, "credentials"),
        ({"url": "http://bad_host!:80/"}, "not a valid host name"),
        ({"url": "http://h:99999/"}, "port"),
        ({"interval_s": 0.5, "timeout_s": 0.1}, "greater than or equal to 1"),
        ({"interval_s": 5, "timeout_s": 5}, "must be less than interval_s"),
        ({"labels": {"job": "x"}}, "set from the target's job name"),
        ({"labels": {"__meta": "x"}}, "not a valid label name"),
        ({"labels": {"bad-name": "x"}}, "not a valid label name"),
        ({"job": ""}, "job"),
        ({"app": "Shop_1"}, "app"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_bad_targets_are_refused_with_the_reason(fields: dict[str, object], reason: str) -> None:
    body = {"job": "node", "url": "http://127.0.0.1:9100/metrics"} | fields
    with pytest.raises(ValidationError, match=reason):
        ScrapeTargetCreate.model_validate(body)


# --- one scrape over real HTTP -------------------------------------------------------------


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.5)
        routes = {
            "/metrics": (200, "text/plain; version=0.0.4", PAGE),
            "/slow": (200, "text/plain", "x 1\n"),
            "/html": (200, "text/html; charset=utf-8", "<html><body>status</body></html>"),
            "/html-as-text": (200, "text/plain", "<html><body>status</body></html>"),
            "/broken": (500, "text/plain", "boom"),
        }
        status, media, body = routes.get(self.path, (404, "text/plain", "no"))
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("content-type", media)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def exporter() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_a_good_page_is_up_with_its_samples(exporter: str) -> None:
    async with httpx.AsyncClient() as client:
        outcome = await scrape.scrape(client, _spec(f"{exporter}/metrics"), max_bytes=1 << 20)
    assert outcome.status.health == "up" and outcome.status.error is None
    assert outcome.status.samples == len(exposition.parse(PAGE))
    by_name = {s.name: s.value for s in outcome.samples}
    assert by_name["up"] == 1.0
    assert by_name["scrape_samples_scraped"] == len(exposition.parse(PAGE))
    assert by_name["node_cpu_seconds_total"] in (1234.5, 56.25)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/html", "not Prometheus text format: the target answered 'text/html'"),
        ("/html-as-text", "not Prometheus text format: line 1"),
        ("/broken", "the target answered HTTP 500"),
        ("/slow", "timed out after 0.5 s"),
        ("/missing", "HTTP 404"),
    ],
)
async def test_a_failed_scrape_is_down_with_the_reason(
    exporter: str, path: str, reason: str
) -> None:
    spec = _spec(f"{exporter}{path}", timeout_s=0.5)
    async with httpx.AsyncClient() as client:
        outcome = await scrape.scrape(client, spec, max_bytes=1 << 20)
    assert outcome.status.health == "down"
    assert outcome.status.error is not None and reason in outcome.status.error
    assert {s.name: s.value for s in outcome.samples} == {
        "up": 0.0,
        "scrape_duration_seconds": pytest.approx(outcome.status.duration_s),
        "scrape_samples_scraped": 0.0,
    }


async def test_a_page_over_the_size_limit_fails_and_a_refused_connection_too(
    exporter: str,
) -> None:
    async with httpx.AsyncClient() as client:
        big = await scrape.scrape(client, _spec(f"{exporter}/metrics"), max_bytes=100)
        closed = await scrape.scrape(client, _spec("http://127.0.0.1:9/metrics"), max_bytes=100)
    assert big.status.error == "the page exceeds 100 bytes"
    assert closed.status.health == "down" and "ConnectError" in (closed.status.error or "")
