"""The metric, log and event indices in Elasticsearch (official async client)."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError, TransportError
from elasticsearch import ConnectionError as ESConnectionError

log = logging.getLogger(__name__)

_KEYWORD_LABELS = [{"labels": {"path_match": "labels.*", "mapping": {"type": "keyword"}}}]

# What the events and alerts indices share: the CloudEvent, its app, a kind and a summary.
_EVENT_FIELDS: dict[str, Any] = {
    "id": {"type": "keyword"},
    "source": {"type": "keyword"},
    "type": {"type": "keyword"},
    "subject": {"type": "keyword"},
    "ts": {"type": "date", "format": "epoch_millis"},
    "app": {"type": "keyword"},
    "kind": {"type": "keyword"},
    "summary": {"type": "text"},
    "data": {"type": "object", "enabled": False},
}

TEMPLATES: dict[str, dict[str, Any]] = {
    "metrics": {
        "dynamic_templates": _KEYWORD_LABELS,
        "properties": {
            "series_id": {"type": "keyword"},
            "name": {"type": "keyword"},
            "ts": {"type": "date", "format": "epoch_millis"},
            "value": {"type": "double"},
        },
    },
    "logs": {
        "dynamic_templates": _KEYWORD_LABELS,
        "properties": {
            "ts": {"type": "date", "format": "epoch_millis"},
            "level": {"type": "keyword"},
            "message": {"type": "text"},
            "source": {"type": "keyword"},
        },
    },
    "events": {
        "properties": {
            **_EVENT_FIELDS,
            "data_text": {"type": "text"},
            "data_content_type": {"type": "keyword"},
        },
    },
    "alerts": {
        "dynamic_templates": _KEYWORD_LABELS,
        "properties": {
            **_EVENT_FIELDS,
            "fingerprint": {"type": "keyword"},
            "state": {"type": "keyword"},
            "severity": {"type": "keyword"},
        },
    },
}


# Documents per bulk request: large enough to amortize the round trip, small enough that
# one request never nears the store's request size limit.
BULK_CHUNK_DOCS = 5000


class StoreUnavailable(Exception):
    """Elasticsearch did not answer, or asked us to back off."""


def unavailable(exc: Exception) -> bool:
    """The store is not there for now: no connection, or a back-off status."""
    if isinstance(exc, ESConnectionError | TransportError):
        return True
    return getattr(getattr(exc, "meta", None), "status", 0) in (429, 502, 503, 504)


class QueryError(ValueError):
    """The query cannot be run as given; the text says why (HTTP 422)."""


def index_for(prefix: str, kind: str, ts_ms: int) -> str:
    """Monthly indices: opsline-metrics-2026.11 (retention drops whole months)."""
    month = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y.%m")
    return f"{prefix}-{kind}-{month}"


async def install_templates(
    es: AsyncElasticsearch, prefix: str, *, lifecycle: str | None = None
) -> None:
    """One index template per kind; with `lifecycle`, new indices follow that ILM policy."""
    for kind, mappings in TEMPLATES.items():
        settings: dict[str, Any] = {"number_of_shards": 1, "number_of_replicas": 0}
        if lifecycle:
            settings["index.lifecycle.name"] = lifecycle
        await es.indices.put_index_template(
            name=f"{prefix}-{kind}",
            index_patterns=[f"{prefix}-{kind}-*"],
            template={"settings": settings, "mappings": mappings},
            priority=100,
        )


async def bulk_index(
    es: AsyncElasticsearch, actions: list[tuple[str, str, dict[str, Any]]]
) -> list[tuple[int, str]]:
    """Index (index, id, doc) triples; returns (position, reason) of the items refused.

    Raises StoreUnavailable when the store is down or overloaded (429), so the caller
    keeps the records and tries again.
    """
    refused: list[tuple[int, str]] = []
    for offset in range(0, len(actions), BULK_CHUNK_DOCS):
        chunk = actions[offset : offset + BULK_CHUNK_DOCS]
        refused += [(offset + pos, reason) for pos, reason in await _bulk(es, chunk)]
    return refused


async def _bulk(
    es: AsyncElasticsearch, actions: list[tuple[str, str, dict[str, Any]]]
) -> list[tuple[int, str]]:
    operations: list[dict[str, Any]] = []
    for index, doc_id, doc in actions:
        operations.append({"index": {"_index": index, "_id": doc_id}})
        operations.append(doc)
    try:
        response = await es.bulk(operations=operations)
    except Exception as exc:
        if unavailable(exc):
            raise StoreUnavailable(str(exc)) from exc
        raise
    refused: list[tuple[int, str]] = []
    if response.get("errors"):
        for pos, item in enumerate(response["items"]):
            result = next(iter(item.values()))
            status = result.get("status", 200)
            if status == 429 or status >= 500:
                raise StoreUnavailable(f"bulk item refused with {status}")
            if status >= 300:
                error = result.get("error") or {}
                reason = error.get("reason") if isinstance(error, dict) else str(error)
                refused.append((pos, f"elasticsearch refused the document: {reason}"))
    return refused


async def query_metrics(
    es: AsyncElasticsearch,
    *,
    prefix: str,
    name: str,
    matchers: list[Any],
    start_ms: int,
    end_ms: int,
    max_points: int,
) -> tuple[list[dict[str, Any]], bool]:
    """Samples of `name` matching all label matchers (queries.Matcher) in [start, end],
    grouped by series."""
    filters: list[dict[str, Any]] = [
        {"term": {"name": name}},
        {"range": {"ts": {"gte": start_ms, "lte": end_ms}}},
    ]
    must_not: list[dict[str, Any]] = []
    for matcher in matchers:
        negated, clause = matcher.clause()
        (must_not if negated else filters).append(clause)
    series: dict[str, dict[str, Any]] = {}
    search_after: list[Any] | None = None
    fetched = 0
    truncated = False
    page = 5000
    while True:
        kwargs: dict[str, Any] = {}
        if search_after is not None:
            kwargs["search_after"] = search_after
        try:
            response = await es.search(
                index=f"{prefix}-metrics-*",
                query={"bool": {"filter": filters, "must_not": must_not}},
                sort=[{"ts": "asc"}, {"series_id": "asc"}],
                size=min(page, max_points - fetched + 1),
                source_includes=["series_id", "name", "labels", "ts", "value"],
                ignore_unavailable=True,
                allow_no_indices=True,
                **kwargs,
            )
        except BadRequestError as exc:
            raise QueryError(f"the store refused the query: {exc.message}") from None
        except (ESConnectionError, TransportError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        hits = response["hits"]["hits"]
        for hit in hits:
            if fetched >= max_points:
                truncated = True
                break
            src = hit["_source"]
            entry = series.setdefault(
                src["series_id"],
                {"name": src["name"], "labels": src.get("labels") or {}, "points": []},
            )
            entry["points"].append([iso(src["ts"]), src["value"]])
            fetched += 1
        if truncated or len(hits) < min(page, max_points - fetched + 1) or not hits:
            break
        search_after = hits[-1]["sort"]
    out = sorted(series.values(), key=lambda s: (s["name"], sorted(s["labels"].items())))
    return out, truncated


def iso(ts: Any) -> str:
    ms = int(ts)
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


# --------------------------------------------------------------------------- retention

KINDS = tuple(TEMPLATES)
_MONTHLY = re.compile(r"^(?P<prefix>.+)-(?P<kind>[a-z]+)-(?P<year>\d{4})\.(?P<month>\d{2})$")
# ILM counts from an index's creation, and a monthly index keeps receiving documents for
# up to a month after it: the policy waits that month out on top of the retention.
MONTH_DAYS = 31


def policy_name(prefix: str) -> str:
    return f"{prefix}-retention"


async def install_ilm_policy(es: AsyncElasticsearch, prefix: str, days: int) -> bool:
    """Put the delete-after policy; False when the store has no ILM (then retention falls
    back to expired_indices + delete). Raises StoreUnavailable when the store is down."""
    try:
        await es.ilm.put_lifecycle(
            name=policy_name(prefix),
            policy={
                "phases": {
                    "hot": {"min_age": "0ms", "actions": {}},
                    "delete": {"min_age": f"{days + MONTH_DAYS}d", "actions": {"delete": {}}},
                }
            },
        )
    except (ESConnectionError, TransportError) as exc:
        raise StoreUnavailable(str(exc)) from exc
    except Exception as exc:
        status = getattr(getattr(exc, "meta", None), "status", 0)
        if status in (400, 404, 405, 501):
            log.debug("no ILM: %s", exc)
            return False
        raise
    return True


def expired_indices(names: list[str], *, prefix: str, days: int, now: datetime) -> list[str]:
    """Our monthly indices whose whole month is older than `days` days."""
    cutoff = now - timedelta(days=days)
    out = []
    for name in names:
        m = _MONTHLY.match(name)
        if m is None or m["prefix"] != prefix or m["kind"] not in KINDS:
            continue
        year, month = int(m["year"]), int(m["month"])
        if not 1 <= month <= 12:
            continue
        month_end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        if month_end <= cutoff:
            out.append(name)
    return sorted(out)


async def delete_expired(
    es: AsyncElasticsearch, *, prefix: str, days: int, now: datetime | None = None
) -> list[str]:
    """Delete the expired monthly indices (the fallback when the store has no ILM)."""
    try:
        found = await es.indices.get(
            index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True
        )
        names = expired_indices(list(found), prefix=prefix, days=days, now=now or datetime.now(UTC))
        for name in names:
            await es.indices.delete(index=name, ignore_unavailable=True)
            log.info("retention: deleted index %s (older than %d days)", name, days)
    except (ESConnectionError, TransportError) as exc:
        raise StoreUnavailable(str(exc)) from exc
    return names
