"""The scraper: every target fetched each interval, its page published to metrics.points.

Sharding. Replicas share the work through Kafka's group protocol: a target's shard is a
hash of its id modulo the partitions of `ingest.raw`, and a replica scrapes the targets
whose shard is a partition its normalizer (consumer group `dataops-ingest`) holds right
now. Kafka gives each partition to exactly one member, so each target has one scraper;
when replicas come or go the partitions move and so do the targets (during a rebalance
a target may miss or repeat one scrape).

Labels. Every series gets `job`, `instance` (host:port of the URL), the target's labels
and `app` when the target has one. `honor_labels` decides clashes with labels on the
page: false (default, as Prometheus) keeps the target's and renames the page's to
`exported_<name>`; true keeps the page's. Labels with empty values are dropped. Explicit
timestamps on the page are kept; other samples get the scrape's start time.

Health. Per target, the series `up` (1/0), `scrape_duration_seconds` and
`scrape_samples_scraped`; a failed scrape (timeout, non-200, not an exposition, a
malformed page, too large) is up=0 with the reason in the target's last_error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import httpx
from prometheus_client import REGISTRY, Counter, Histogram
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events import topics as t
from libs.events.envelope import PROTOBUF, CloudEvent
from libs.events.publisher import Publisher
from libs.telemetry.samples import MAX_SAMPLES, NormSample, encode_batch, parse_metric_batch
from services.dataops_ingest import exposition, targets
from services.dataops_ingest.models import ScrapeTarget, instance_of

log = logging.getLogger(__name__)

SOURCE = "opsline/dataops-ingest/scraper"
RELOAD_S = 2.0
ACCEPT = "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5,*/*;q=0.1"


class ScrapeMetrics:
    def __init__(self) -> None:
        self.scrapes = Counter(
            "opsline_scrapes", "Scrapes by outcome (up, down)", ["outcome"], registry=REGISTRY
        )
        self.failures = Counter(
            "opsline_scrape_failures",
            "Failed scrapes by reason kind",
            ["reason"],
            registry=REGISTRY,
        )
        self.seconds = Histogram(
            "opsline_scrape_seconds",
            "Time to fetch and parse one target",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=REGISTRY,
        )
        self.samples = Counter(
            "opsline_scrape_samples",
            "Scraped samples by outcome (published, rejected)",
            ["outcome"],
            registry=REGISTRY,
        )


@lru_cache(maxsize=1)
def scrape_metrics() -> ScrapeMetrics:
    return ScrapeMetrics()


class ScrapeFailed(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """What a scrape needs of a target row (rows are not passed across tasks)."""

    id: str
    job: str
    url: str
    interval_s: float
    timeout_s: float
    labels: tuple[tuple[str, str], ...]
    honor_labels: bool

    @classmethod
    def of(cls, row: ScrapeTarget) -> TargetSpec:
        labels = dict(targets.labels_of(row))
        if row.app:
            labels["app"] = row.app
        labels |= {"job": row.job, "instance": instance_of(row.url)}
        return cls(
            row.id,
            row.job,
            row.url,
            row.interval_s,
            row.timeout_s,
            tuple(sorted(labels.items())),
            row.honor_labels,
        )


def shard_of(target_id: str, partitions: int) -> int:
    """The partition of ingest.raw whose holder scrapes the target."""
    digest = hashlib.blake2b(target_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % max(partitions, 1)


def owned(rows: list[ScrapeTarget], held: set[int], partitions: int) -> list[ScrapeTarget]:
    return [r for r in rows if shard_of(r.id, partitions) in held]


def merge_labels(page: dict[str, str], target: dict[str, str], honor: bool) -> dict[str, str]:
    """A sample's labels: the page's and the target's, clashes settled by honor_labels."""
    if honor:
        merged = target | page
    else:
        merged = dict(page)
        for key in target:
            if key in merged:
                merged[f"exported_{key}"] = merged.pop(key)
        merged |= target
    return {k: v for k, v in merged.items() if v != ""}


def to_samples(
    raw: list[exposition.RawSample], spec: TargetSpec, now_ms: int
) -> tuple[list[NormSample], list[str]]:
    """Validate the page's samples (libs/telemetry/samples.py); (taken, reasons refused)."""
    target = dict(spec.labels)
    items = [
        {
            "name": s.name,
            "labels": merge_labels(s.labels, target, spec.honor_labels),
            "value": s.value,
            "ts": s.ts_ms if s.ts_ms is not None else now_ms,
        }
        for s in raw
    ]
    taken: list[NormSample] = []
    errors: list[str] = []
    for start in range(0, len(items), MAX_SAMPLES):
        parsed = parse_metric_batch({"samples": items[start : start + MAX_SAMPLES]}, now_ms=now_ms)
        taken += parsed.samples
        errors += parsed.errors
    return taken, errors


def health_samples(
    spec: TargetSpec, *, up: bool, duration_s: float, scraped: int, now_ms: int
) -> list[NormSample]:
    target = dict(spec.labels)
    items = [
        {"name": "up", "labels": target, "value": 1.0 if up else 0.0, "ts": now_ms},
        {"name": "scrape_duration_seconds", "labels": target, "value": duration_s, "ts": now_ms},
        {"name": "scrape_samples_scraped", "labels": target, "value": float(scraped), "ts": now_ms},
    ]
    return parse_metric_batch({"samples": items}, now_ms=now_ms).samples


async def fetch(client: httpx.AsyncClient, spec: TargetSpec, max_bytes: int) -> str:
    """The target's page as text; ScrapeFailed with the reason otherwise."""
    headers = {
        "Accept": ACCEPT,
        "X-Prometheus-Scrape-Timeout-Seconds": f"{spec.timeout_s:g}",
    }
    try:
        async with asyncio.timeout(spec.timeout_s):
            async with client.stream("GET", spec.url, headers=headers) as response:
                if response.status_code != 200:
                    raise ScrapeFailed(
                        "http_status", f"the target answered HTTP {response.status_code}"
                    )
                try:
                    exposition.check_content_type(response.headers.get("content-type", ""))
                except exposition.ParseError as exc:
                    raise ScrapeFailed("not_exposition", str(exc)) from None
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise ScrapeFailed("too_large", f"the page exceeds {max_bytes} bytes")
                    chunks.append(chunk)
    except TimeoutError:
        raise ScrapeFailed("timeout", f"timed out after {spec.timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise ScrapeFailed("connection", f"{type(exc).__name__}: {exc}"[:500]) from None
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise ScrapeFailed("not_exposition", "not Prometheus text format: not UTF-8") from None


@dataclass(slots=True)
class Outcome:
    samples: list[NormSample]
    status: targets.Status
    # metrics.points payloads, one per series partition: (partition, MetricBatch bytes, key)
    batches: list[tuple[int, bytes, str]]


Offload = Callable[..., Awaitable[Outcome]]


async def _inline(fn: Callable[..., Outcome], *args: Any) -> Outcome:
    return fn(*args)


async def scrape(
    client: httpx.AsyncClient,
    spec: TargetSpec,
    *,
    max_bytes: int,
    partitions: int = 1,
    offload: Offload = _inline,
) -> Outcome:
    """Scrape one target; never raises: a failure is an up=0 outcome with its reason.

    The fetch runs on the event loop; parsing, validation and encoding (CPU) run through
    `offload`, which the Scraper points at a worker thread so that a busy scraper never
    starves the API, the Kafka heartbeats or the other fetches.
    """
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    text: str | None = None
    failure: ScrapeFailed | None = None
    try:
        text = await fetch(client, spec, max_bytes)
    except ScrapeFailed as exc:
        failure = exc
    except Exception as exc:  # a bug must cost one scrape, never the scraper
        log.exception("scrape of %s failed unexpectedly", spec.url)
        failure = ScrapeFailed("internal", f"internal error: {type(exc).__name__}: {exc}"[:500])
    fetched_s = time.perf_counter() - started
    return await offload(digest, spec, text, failure, now_ms, fetched_s, partitions)


def digest(
    spec: TargetSpec,
    text: str | None,
    failure: ScrapeFailed | None,
    now_ms: int,
    fetched_s: float,
    partitions: int,
) -> Outcome:
    """A fetched page (or the failure to fetch it) → samples, health series and payloads."""
    metrics = scrape_metrics()
    started = time.perf_counter()
    samples: list[NormSample] = []
    scraped = 0
    try:
        if failure is not None:
            raise failure
        assert text is not None
        try:
            raw = exposition.parse(text)
        except exposition.ParseError as exc:
            raise ScrapeFailed("parse", f"not Prometheus text format: {exc}") from None
        scraped = len(raw)
        samples, refused = to_samples(raw, spec, now_ms)
        metrics.samples.labels("published").inc(len(samples))
        metrics.samples.labels("rejected").inc(len(refused))
        error = None
    except ScrapeFailed as exc:
        error = str(exc)
        metrics.failures.labels(exc.kind).inc()
    except Exception as exc:
        log.exception("digesting the page of %s failed unexpectedly", spec.url)
        error = f"internal error: {type(exc).__name__}: {exc}"[:500]
        metrics.failures.labels("internal").inc()
    duration = fetched_s + time.perf_counter() - started
    metrics.seconds.observe(duration)
    up = error is None
    metrics.scrapes.labels("up" if up else "down").inc()
    samples += health_samples(spec, up=up, duration_s=duration, scraped=scraped, now_ms=now_ms)
    status = targets.Status(
        health="up" if up else "down",
        at=datetime.fromtimestamp(now_ms / 1000, UTC),
        error=error,
        duration_s=duration,
        samples=scraped,
    )
    return Outcome(samples, status, encode_groups(spec, samples, now_ms, partitions))


def encode_groups(
    spec: TargetSpec, samples: list[NormSample], now_ms: int, partitions: int
) -> list[tuple[int, bytes, str]]:
    """MetricBatch payloads per series partition, as the normalizer writes them."""
    scrape_id = f"scrape:{spec.id}:{now_ms}"
    by_part: dict[int, list[NormSample]] = defaultdict(list)
    for sample in samples:
        by_part[sample.series.hash32 % partitions].append(sample)
    return [
        (part, encode_batch(group, source_event_id=scrape_id), group[0].series_id)
        for part, group in by_part.items()
    ]


async def publish(publisher: Publisher, spec: TargetSpec, outcome: Outcome) -> None:
    """Send the outcome's payloads to metrics.points; returns once Kafka has them all."""
    pending = []
    scrape_id = f"scrape:{spec.id}:{int(outcome.status.at.timestamp() * 1000)}"
    for part, data, key in outcome.batches:
        event = CloudEvent.create(
            type=t.METRIC_POINTS,
            source=SOURCE,
            subject=spec.job,
            data=data,
            datacontenttype=PROTOBUF,
            id=f"{scrape_id}:{part}",
        )
        pending.append(await publisher.send(t.METRICS_POINTS, event, key=key, partition=part))
    await asyncio.gather(*pending)


class Scraper:
    """Runs one loop per owned target; reloads the target list every RELOAD_S seconds."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        publisher: Publisher,
        held: Callable[[], set[int]],
        shard_partitions: Callable[[], int],
        point_partitions: Callable[[], int],
        max_bytes: int,
        concurrency: int,
        flush_s: float,
    ) -> None:
        self.sessions = sessions
        self.publisher = publisher
        self.held = held
        self.shard_partitions = shard_partitions
        self.point_partitions = point_partitions
        self.max_bytes = max_bytes
        self.flush_s = flush_s
        self.limit = asyncio.Semaphore(concurrency)
        self.client = httpx.AsyncClient(
            follow_redirects=True,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        # One thread for the CPU part of every scrape: pages are digested one at a time
        # (the GIL allows no more), and the event loop keeps its turn in between.
        self.cpu = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="scrape-cpu")
        self.loops: dict[str, tuple[TargetSpec, asyncio.Task[None]]] = {}
        self.pending: dict[str, targets.Status] = {}
        self.rounds = 0

    async def run(self, stop: asyncio.Event) -> None:
        flusher = asyncio.create_task(self._flush_loop(stop))
        try:
            while not stop.is_set():
                await self.reload()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RELOAD_S)
        finally:
            for _, task in self.loops.values():
                task.cancel()
            await asyncio.gather(*(task for _, task in self.loops.values()), return_exceptions=True)
            self.loops.clear()
            await flusher
            await self.client.aclose()
            self.cpu.shutdown(wait=False, cancel_futures=True)

    async def _offload(self, fn: Callable[..., Outcome], *args: Any) -> Outcome:
        return await asyncio.get_running_loop().run_in_executor(self.cpu, fn, *args)

    async def reload(self) -> None:
        """Start loops for newly owned or changed targets, stop the others."""
        try:
            async with self.sessions() as session:
                rows = await targets.get_all(session)
        except Exception as exc:
            log.warning("scraper: cannot read targets: %s", exc)
            return
        mine = {r.id: TargetSpec.of(r) for r in owned(rows, self.held(), self.shard_partitions())}
        for target_id in list(self.loops):
            spec, task = self.loops[target_id]
            if mine.get(target_id) != spec:
                task.cancel()
                del self.loops[target_id]
        for target_id, spec in mine.items():
            if target_id not in self.loops:
                task = asyncio.create_task(self._target_loop(spec), name=f"scrape {spec.url}")
                self.loops[target_id] = (spec, task)

    async def _target_loop(self, spec: TargetSpec) -> None:
        # Spread targets over the interval, as Prometheus does, instead of a burst per tick.
        offset = random.Random(spec.id).uniform(0, spec.interval_s)
        next_at = time.monotonic() + offset
        while True:
            await asyncio.sleep(max(next_at - time.monotonic(), 0))
            next_at += spec.interval_s
            if next_at < time.monotonic():  # fell behind: skip the missed ticks
                next_at = time.monotonic() + spec.interval_s
            async with self.limit:
                outcome = await scrape(
                    self.client,
                    spec,
                    max_bytes=self.max_bytes,
                    partitions=self.point_partitions(),
                    offload=self._offload,
                )
            self.pending[spec.id] = outcome.status
            try:
                await publish(self.publisher, spec, outcome)
            except Exception as exc:  # Kafka trouble: this scrape's samples are lost
                log.warning("scraper: publishing %s failed: %s", spec.url, exc)
            self.rounds += 1

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.flush_s)
            await self.flush()

    async def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, {}
        try:
            async with self.sessions() as session:
                await targets.record_status(session, statuses=batch)
        except Exception as exc:
            log.warning("scraper: cannot record target health: %s", exc)
            self.pending = batch | self.pending
