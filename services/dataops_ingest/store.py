"""The metric, log and event indices in Elasticsearch (official async client)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from elasticsearch import AsyncElasticsearch, TransportError
from elasticsearch import ConnectionError as ESConnectionError

log = logging.getLogger(__name__)

_KEYWORD_LABELS = [{"labels": {"path_match": "labels.*", "mapping": {"type": "keyword"}}}]

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
            "id": {"type": "keyword"},
            "source": {"type": "keyword"},
            "type": {"type": "keyword"},
            "subject": {"type": "keyword"},
            "ts": {"type": "date", "format": "epoch_millis"},
            "data": {"type": "object", "enabled": False},
            "data_text": {"type": "text"},
        },
    },
}


# Documents per bulk request: large enough to amortize the round trip, small enough that
# one request never nears the store's request size limit.
BULK_CHUNK_DOCS = 5000


class StoreUnavailable(Exception):
    """Elasticsearch did not answer, or asked us to back off."""


def index_for(prefix: str, kind: str, ts_ms: int) -> str:
    """Monthly indices: opsline-metrics-2026.11 (retention drops whole months)."""
    month = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y.%m")
    return f"{prefix}-{kind}-{month}"


async def install_templates(es: AsyncElasticsearch, prefix: str) -> None:
    for kind, mappings in TEMPLATES.items():
        await es.indices.put_index_template(
            name=f"{prefix}-{kind}",
            index_patterns=[f"{prefix}-{kind}-*"],
            template={
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": mappings,
            },
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
    except (ESConnectionError, TransportError) as exc:
        raise StoreUnavailable(str(exc)) from exc
    except Exception as exc:
        status = getattr(getattr(exc, "meta", None), "status", 0)
        if status in (429, 502, 503, 504):
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
    matchers: dict[str, str],
    start_ms: int,
    end_ms: int,
    max_points: int,
) -> tuple[list[dict[str, Any]], bool]:
    """Samples of `name` matching all label matchers in [start, end], grouped by series."""
    filters: list[dict[str, Any]] = [
        {"term": {"name": name}},
        {"range": {"ts": {"gte": start_ms, "lte": end_ms}}},
    ]
    filters += [{"term": {f"labels.{k}": v}} for k, v in matchers.items()]
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
                query={"bool": {"filter": filters}},
                sort=[{"ts": "asc"}, {"series_id": "asc"}],
                size=min(page, max_points - fetched + 1),
                source_includes=["series_id", "name", "labels", "ts", "value"],
                ignore_unavailable=True,
                allow_no_indices=True,
                **kwargs,
            )
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
            entry["points"].append([_iso(src["ts"]), src["value"]])
            fetched += 1
        if truncated or len(hits) < min(page, max_points - fetched + 1) or not hits:
            break
        search_after = hits[-1]["sort"]
    out = sorted(series.values(), key=lambda s: (s["name"], sorted(s["labels"].items())))
    return out, truncated


def _iso(ts: Any) -> str:
    ms = int(ts)
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
