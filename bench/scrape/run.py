"""bench/scrape: 200 exporter targets scraped by dataops-ingest, beside a bare scrape loop.

The page is a real node exporter's (captured at the start when prometheus-node-exporter
is installed; a synthetic one of the same shape otherwise), served on 200 paths by one
HTTP server in its own process. dataops-ingest runs alone on a private broker and store,
its scraper on (sink off: this measures scraping, not indexing), every target at a 5 s
interval. Baselines, in the same run: httpx fetching the same 200 pages (64 at a time)
and parsing them, round after round as fast as it can: with opsline's own exposition
parser (the floor: no validation, no Kafka), and with prometheus_client's parser.

Figures: time per round (all targets once), samples per second, and CPU seconds per
round (the dataops-ingest process; the baseline's own process).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.infra import Infra, cpu_seconds, free_port, wait_port
from bench.scrape import pages
from services.dataops_ingest import exposition

TARGETS = 200
INTERVAL_S = 5.0
TIMEOUT_S = 4.0
WINDOW_S = 30.0
TOKEN = "bench-scrape-internal"
ROOT = Path(__file__).resolve().parents[2]


def exporter_page(workdir: Path) -> bytes:
    """A real node exporter's page, or a synthetic page of the same shape."""
    if pages.NODE_EXPORTER:
        with pages.node_exporter() as url:
            return httpx.get(url, timeout=10).content
    lines = []
    for cpu in range(8):
        lines.append("# TYPE node_cpu_seconds_total counter")
        for mode in ("idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"):
            lines.append(f'node_cpu_seconds_total{{cpu="{cpu}",mode="{mode}"}} {cpu * 1000.5}')
    for i in range(900):
        lines.append(f'node_synthetic_gauge{{device="dev{i % 30}",kind="k{i}"}} {i * 1.25}')
    return ("\n".join(lines) + "\n").encode()


def count_ours(text: str) -> int:
    return len(exposition.parse(text))


def count_reference(text: str) -> int:
    return sum(len(f.samples) for f in text_string_to_metric_families(text))


async def baseline(urls: list[str], rounds: int, count: Callable[[str], int]) -> dict[str, float]:
    """Fetch every page and parse it, `rounds` times, 64 fetches at a time."""
    limit = asyncio.Semaphore(64)
    samples = 0

    async def one(client: httpx.AsyncClient, url: str) -> int:
        async with limit:
            text = (await client.get(url, timeout=10)).text
        return count(text)

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits) as client:
        await asyncio.gather(*(one(client, u) for u in urls))  # warm: connections, caches
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            samples += sum(await asyncio.gather(*(one(client, u) for u in urls)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "round_s": wall / rounds,
        "samples_per_s": samples / wall,
        "cpu_per_round_s": cpu / rounds,
        "samples_per_round": samples / rounds,
    }


def _counters(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for s in exposition.parse(text):
        if s.name.startswith("opsline_scrape"):
            key = s.name + "".join(f",{k}={v}" for k, v in sorted(s.labels.items()))
            out[key] = s.value
    return out


def _wait_all_up(client: httpx.Client, url: str, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    listed: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        listed = client.get(f"{url}/internal/v1/scrape/targets").json()["targets"]
        if len(listed) == n and all(t["health"] == "up" for t in listed):
            return
        time.sleep(1)
    down = [t["last_error"] for t in listed if t["health"] != "up"][:3]
    raise RuntimeError(f"targets not all up after {timeout}s: {down}")


def platform(infra: Infra, urls: list[str], home: Path, window_s: float) -> dict[str, float]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KUBERNETES_"))}
    env |= {
        "OPSLINE_HOME": str(home),
        "OPSLINE_KAFKA_BOOTSTRAP": infra.bootstrap,
        "OPSLINE_ELASTICSEARCH_URL": infra.es_url,
        "OPSLINE_INTERNAL_TOKEN": TOKEN,
        "OPSLINE_LOG_LEVEL": "WARNING",
        "OPSLINE_DATAOPS_INGEST_PORT": str(port),
        "OPSLINE_DATAOPS_INGEST_RUN_SINK": "false",
        "OPSLINE_DATAOPS_INGEST_DISCOVERY_KUBECONFIG": "",
    }
    log = open(home / "dataops-ingest.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.dataops_ingest"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(headers=headers, timeout=30) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if client.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                raise RuntimeError("dataops-ingest did not become ready")
            for i, target in enumerate(urls):
                body = {
                    "job": "bench",
                    "url": target,
                    "interval_s": INTERVAL_S,
                    "timeout_s": TIMEOUT_S,
                    "labels": {"replica": str(i)},
                }
                client.post(f"{url}/internal/v1/scrape/targets", json=body).raise_for_status()
            _wait_all_up(client, url, len(urls))
        before, cpu0, t0 = _counters(url), cpu_seconds(proc.pid), time.perf_counter()
        time.sleep(window_s)
        after, cpu1, t1 = _counters(url), cpu_seconds(proc.pid), time.perf_counter()
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    wall = t1 - t0
    rounds = delta("opsline_scrapes_total,outcome=up") / len(urls)
    failed = delta("opsline_scrapes_total,outcome=down")
    published = delta("opsline_scrape_samples_total,outcome=published")
    return {
        "round_s": wall / rounds if rounds else float("inf"),
        "samples_per_s": published / wall,
        "cpu_per_round_s": (cpu1 - cpu0) / rounds if rounds else float("inf"),
        "rounds": rounds,
        "failed_scrapes": failed,
        "samples_per_round": published / rounds if rounds else 0.0,
    }


def run(quick: bool = False) -> dict[str, Any]:
    n = 50 if quick else TARGETS
    window = 10.0 if quick else WINDOW_S
    with tempfile.TemporaryDirectory(prefix="opsline-bench-scrape-") as tmp:
        workdir = Path(tmp)
        infra = Infra(workdir / "infra").start()
        page = workdir / "page.txt"
        page.write_bytes(exporter_page(workdir))
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.scrape.pages", str(port), str(page)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_port(port)
            urls = [f"http://127.0.0.1:{port}/t/{i}/metrics" for i in range(n)]
            rounds = 3 if quick else 5
            base = asyncio.run(baseline(urls, rounds, count_ours))
            reference = asyncio.run(baseline(urls, rounds, count_reference))
            (workdir / "home").mkdir()
            measured = platform(infra, urls, workdir / "home", window)
        finally:
            server.terminate()
            server.wait(timeout=10)
            infra.stop()
    return {
        "targets": n,
        "interval_s": INTERVAL_S,
        "window_s": window,
        "samples_per_page": round(base["samples_per_round"] / n),
        "baseline": base,
        "reference": reference,
        "platform": measured,
    }


def table(r: dict[str, Any]) -> str:
    b, ref, p = r["baseline"], r["reference"], r["platform"]
    return "\n".join(
        [
            "| measure | opsline (dataops-ingest scraper) | baseline: httpx + the same parser "
            "| ratio | httpx + prometheus_client's parser |",
            "|---|---|---|---|---|",
            f"| time per round ({r['targets']} targets) | {p['round_s']:.2f} s | "
            f"{b['round_s']:.2f} s | {b['round_s'] / p['round_s']:.0%} | {ref['round_s']:.2f} s |",
            f"| samples per second | {p['samples_per_s']:,.0f} | {b['samples_per_s']:,.0f} | "
            f"{p['samples_per_s'] / b['samples_per_s']:.0%} | {ref['samples_per_s']:,.0f} |",
            f"| CPU seconds per round | {p['cpu_per_round_s']:.2f} s | "
            f"{b['cpu_per_round_s']:.2f} s | {b['cpu_per_round_s'] / p['cpu_per_round_s']:.0%} "
            f"| {ref['cpu_per_round_s']:.2f} s |",
            f"| failed scrapes in the window | {p['failed_scrapes']:.0f} | — | — | — |",
        ]
    )


if __name__ == "__main__":
    result = run(quick="--quick" in sys.argv)
    print(result)
    print(table(result))
