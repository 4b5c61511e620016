"""The topics of ARCHITECTURE.md, and creating them (idempotently) at start-up."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

APP_EVENTS = "app.events"
BUILD_COMMANDS = "build.commands"
BUILD_EVENTS = "build.events"
DEPLOY_COMMANDS = "deploy.commands"
DEPLOY_EVENTS = "deploy.events"
INGEST_RAW = "ingest.raw"
METRICS_POINTS = "metrics.points"
LOGS_RECORDS = "logs.records"
OPS_EVENTS = "ops.events"
ALERT_EVENTS = "alert.events"
DEADLETTER = "deadletter"
# aiops-detector's own: metric batches re-keyed so each series always lands on one
# partition (its state's), and alert signals (firing/resolved per fingerprint).
AIOPS_SERIES = "aiops.series"
AIOPS_SIGNALS = "aiops.signals"

ALL_TOPICS = (
    APP_EVENTS,
    BUILD_COMMANDS,
    BUILD_EVENTS,
    DEPLOY_COMMANDS,
    DEPLOY_EVENTS,
    INGEST_RAW,
    METRICS_POINTS,
    LOGS_RECORDS,
    OPS_EVENTS,
    ALERT_EVENTS,
    DEADLETTER,
    AIOPS_SERIES,
    AIOPS_SIGNALS,
)

# Event types external tools publish onto ingest.raw (or POST /v1/events).
METRIC_BATCH = "io.opsline.metric.batch"
LOG_BATCH = "io.opsline.log.batch"
# Event types of the normalized topics.
METRIC_POINTS = "io.opsline.metric.points"
LOG_RECORDS = "io.opsline.log.records"
OPS_EVENT = "io.opsline.ops.event"
RESERVED_PREFIX = "io.opsline."


async def ensure_topics(
    bootstrap: str,
    topics: tuple[str, ...] | list[str],
    *,
    partitions: int,
    replication: int = 1,
    probe_unlisted: bool = False,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones it created.

    With `probe_unlisted` (the periodic guard), a topic missing from the broker's list is
    first asked for by name: after a restart a producer may have got there first, the
    broker auto-created the topic but leaves it out of the list (Tansu does), and
    "creating" it again would throw its records away.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        unlisted = [t for t in topics if t not in existing]
        if unlisted and probe_unlisted:
            described = await admin.describe_topics(unlisted)
            existing |= {
                d["topic"] for d in described if d.get("error_code", 0) == 0 and d.get("partitions")
            }
        missing = [t for t in topics if t not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(t, partitions, replication) for t in missing]
            )
            for name, code, message in _topic_errors(response):
                if code not in (0, 36):  # 36: already exists (another replica won the race)
                    raise KafkaError(f"cannot create topic {name}: {code} {message}")
            log.info("created topics %s with %d partitions", ", ".join(missing), partitions)
        return missing
    finally:
        await admin.close()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    out = []
    for item in getattr(response, "topic_errors", []):
        name, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        out.append((name, code, message))
    return out


async def wait_for_topics(
    bootstrap: str, topics: tuple[str, ...] | list[str], *, partitions: int, stop: asyncio.Event
) -> None:
    """Retry ensure_topics until the broker answers (services start in any order)."""
    delay = 0.5
    while not stop.is_set():
        try:
            await ensure_topics(bootstrap, topics, partitions=partitions)
            return
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("waiting for Kafka at %s: %s (retry in %.1fs)", bootstrap, exc, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, 10.0)


async def guard_topics(
    bootstrap: str,
    topics: tuple[str, ...] | list[str],
    stop: asyncio.Event,
    *,
    partitions: int,
    interval: float = 30.0,
) -> None:
    """Re-create topics that vanished (a broker restarted with in-memory storage, a purge)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval)
            return
        except TimeoutError:
            pass
        try:
            created = await ensure_topics(
                bootstrap, topics, partitions=partitions, probe_unlisted=True
            )
            if created:
                log.warning("topics were missing and have been re-created: %s", ", ".join(created))
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("topic check failed: %s", exc)
