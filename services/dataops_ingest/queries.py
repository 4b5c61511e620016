"""Read side of the indices: metric ranges with aggregation, series, log search, timelines.

Every function raises store.StoreUnavailable when Elasticsearch does not answer and
QueryError when it refuses the query (a malformed query string, a bad regex).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError

from services.dataops_ingest.store import QueryError, StoreUnavailable, iso, unavailable

AGGREGATIONS = ("avg", "min", "max", "sum", "count", "rate")
MAX_POINTS_PER_SERIES = 11_000  # as Prometheus: (end - start) / step
MAX_SERIES = 1_000
MAX_PAGE_WINDOW = 10_000  # offset + limit, the store's result window
_MATCHER = re.compile(r"^([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)(.*)$", re.S)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: str  # =, !=, =~, !~
    value: str

    def clause(self) -> tuple[bool, dict[str, Any]]:
        """(negated, ES query) for this matcher; __name__ means the metric name."""
        field = "name" if self.label == "__name__" else f"labels.{self.label}"
        if self.op in ("=", "!="):
            query: dict[str, Any] = {"term": {field: self.value}}
        else:
            query = {"regexp": {field: {"value": self.value}}}
        return self.op in ("!=", "!~"), query


def parse_matchers(items: list[str]) -> list[Matcher]:
    """LABEL=VALUE, LABEL!=VALUE, LABEL=~REGEX, LABEL!~REGEX."""
    out = []
    for item in items:
        m = _MATCHER.match(item)
        if m is None:
            raise QueryError(f"match {item[:80]!r}: expected LABEL=VALUE, !=, =~ or !~")
        label, op, value = m.groups()
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise QueryError(f"match {item[:80]!r}: bad regular expression: {exc}") from None
        out.append(Matcher(label, op, value))
    return out


def parse_step(text: str) -> int:
    """A step in milliseconds: `30s`, `5m`, `1h`, or plain seconds; at least 1 s."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise QueryError(f"step {text[:40]!r}: expected a duration like 30s, 5m or 1h")
    ms = int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    if ms < 1000:
        raise QueryError("step: at least 1s")
    return ms


def _bool(filters: list[dict[str, Any]], matchers: list[Matcher]) -> dict[str, Any]:
    must_not: list[dict[str, Any]] = []
    for matcher in matchers:
        negated, clause = matcher.clause()
        (must_not if negated else filters).append(clause)
    return {"bool": {"filter": filters, "must_not": must_not}}


def _range(start_ms: int | None, end_ms: int | None) -> list[dict[str, Any]]:
    bounds = {k: v for k, v in (("gte", start_ms), ("lte", end_ms)) if v is not None}
    return [{"range": {"ts": bounds}}] if bounds else []


async def _search(es: AsyncElasticsearch, index: str, **body: Any) -> Any:
    try:
        return await es.search(index=index, ignore_unavailable=True, allow_no_indices=True, **body)
    except BadRequestError as exc:
        raise QueryError(f"the store refused the query: {_reason(exc)}") from None
    except Exception as exc:
        if unavailable(exc):
            raise StoreUnavailable(str(exc)) from exc
        raise


def _series_terms(response: Any) -> Any:
    """The "series" terms aggregation; none when no index matched (the store then sends
    no aggregations at all, as Elasticsearch does over zero shards)."""
    aggregations = response["aggregations"] if "aggregations" in response else {}
    return aggregations.get("series") or {"buckets": []}


def _reason(exc: BadRequestError) -> str:
    info: Any = exc.info if isinstance(exc.info, dict) else {}
    error = info.get("error") if isinstance(info, dict) else None
    if isinstance(error, dict):
        causes = error.get("root_cause") or [error]
        return str(causes[0].get("reason") or error.get("reason") or exc)[:500]
    return str(exc)[:500]


async def metric_range(
    es: AsyncElasticsearch,
    *,
    prefix: str,
    name: str,
    matchers: list[Matcher],
    start_ms: int,
    end_ms: int,
    step_ms: int,
    agg: str,
) -> tuple[list[dict[str, Any]], bool]:
    """One point per series and step: the step's avg/min/max/sum/count of the samples,
    or for `rate` the per-second increase since the step before (counter resets count
    from zero, as Prometheus does). A date_histogram per series does the work."""
    if agg not in AGGREGATIONS:
        raise QueryError(f"agg {agg!r}: one of {', '.join(AGGREGATIONS)}")
    if (end_ms - start_ms) // step_ms > MAX_POINTS_PER_SERIES:
        raise QueryError(
            f"step too small: more than {MAX_POINTS_PER_SERIES} points per series; "
            "use a larger step or a shorter range"
        )
    metric = "max" if agg == "rate" else ("value_count" if agg == "count" else agg)
    response = await _search(
        es,
        f"{prefix}-metrics-*",
        size=0,
        query=_bool([{"term": {"name": name}}, *_range(start_ms, end_ms)], matchers),
        aggs={
            "series": {
                "terms": {"field": "series_id", "size": MAX_SERIES},
                "aggs": {
                    "meta": {"top_hits": {"size": 1, "_source": ["name", "labels"]}},
                    "steps": {
                        "date_histogram": {
                            "field": "ts",
                            "fixed_interval": f"{step_ms}ms",
                            "min_doc_count": 1,
                        },
                        "aggs": {
                            "v": {metric: {"field": "value"}},
                            "last": {"max": {"field": "ts"}},
                        },
                    },
                },
            }
        },
    )
    terms = _series_terms(response)
    out = []
    for bucket in terms["buckets"]:
        source = bucket["meta"]["hits"]["hits"][0]["_source"]
        buckets = bucket["steps"]["buckets"]
        if agg == "rate":  # a counter's largest value is its latest: time it by that sample
            points = _rate([(int(b["last"]["value"]), float(b["v"]["value"])) for b in buckets])
            points = [(int(b["key"]), v) for b, (_, v) in zip(buckets[1:], points, strict=True)]
        else:
            points = [(int(b["key"]), float(b["v"]["value"])) for b in buckets]
        out.append(
            {
                "name": source["name"],
                "labels": source.get("labels") or {},
                "points": [[iso(ts), value] for ts, value in points],
            }
        )
    out.sort(key=lambda s: (s["name"], sorted(s["labels"].items())))
    return out, bool(terms.get("sum_other_doc_count"))


def _rate(steps: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Per-second increase between consecutive (time, counter value) pairs."""
    out = []
    for (t0, v0), (t1, v1) in itertools.pairwise(steps):
        increase = v1 - v0 if v1 >= v0 else v1  # a reset: the counter started again at 0
        out.append((t1, increase / ((t1 - t0) / 1000)))
    return out


async def series(
    es: AsyncElasticsearch,
    *,
    prefix: str,
    name: str | None,
    matchers: list[Matcher],
    start_ms: int | None,
    end_ms: int | None,
    limit: int,
) -> tuple[list[dict[str, Any]], bool]:
    """The distinct series (name and labels) that have samples in the range."""
    filters = [{"term": {"name": name}}] if name else []
    response = await _search(
        es,
        f"{prefix}-metrics-*",
        size=0,
        query=_bool([*filters, *_range(start_ms, end_ms)], matchers),
        aggs={
            "series": {
                "terms": {"field": "series_id", "size": limit},
                "aggs": {
                    "meta": {"top_hits": {"size": 1, "_source": ["name", "labels"]}},
                    "last": {"max": {"field": "ts"}},
                },
            }
        },
    )
    terms = _series_terms(response)
    out = []
    for bucket in terms["buckets"]:
        source = bucket["meta"]["hits"]["hits"][0]["_source"]
        out.append(
            {
                "id": bucket["key"],
                "name": source["name"],
                "labels": source.get("labels") or {},
                "samples": bucket["doc_count"],
                "last_seen": iso(bucket["last"]["value"]),
            }
        )
    out.sort(key=lambda s: (s["name"], sorted(s["labels"].items())))
    return out, bool(terms.get("sum_other_doc_count"))


async def _newest_first(
    es: AsyncElasticsearch, index: str, query: dict[str, Any], offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """(total matches, the page's documents) sorted by time, newest first."""
    response = await _search(
        es,
        index,
        query=query,
        sort=[{"ts": "desc"}, {"id": {"order": "asc", "unmapped_type": "keyword"}}],
        from_=offset,
        size=limit,
        track_total_hits=True,
    )
    hits = response["hits"]
    return hits["total"]["value"], [h["_source"] for h in hits["hits"]]


def _page(offset: int, limit: int) -> None:
    if offset + limit > MAX_PAGE_WINDOW:
        raise QueryError(f"offset + limit may not exceed {MAX_PAGE_WINDOW}; narrow the time range")


async def search_logs(
    es: AsyncElasticsearch,
    *,
    prefix: str,
    query: str | None,
    matchers: list[Matcher],
    level: str | None,
    start_ms: int | None,
    end_ms: int | None,
    offset: int,
    limit: int,
) -> dict[str, Any]:
    """Log records, newest first: a Lucene query string over message (and fields), labels."""
    _page(offset, limit)
    filters = _range(start_ms, end_ms)
    if level:
        filters.append({"term": {"level": level}})
    body = _bool(filters, matchers)
    if query:
        body["bool"]["must"] = [
            {"query_string": {"query": query, "default_field": "message", "lenient": True}}
        ]
    total, found = await _newest_first(es, f"{prefix}-logs-*", body, offset, limit)
    records = [
        {
            "ts": iso(src["ts"]),
            "level": src.get("level", ""),
            "message": src.get("message", ""),
            "labels": src.get("labels") or {},
            "source": src.get("source", ""),
        }
        for src in found
    ]
    return {"total": total, "offset": offset, "limit": limit, "records": records}


async def timeline(
    es: AsyncElasticsearch,
    *,
    prefix: str,
    app: str,
    kinds: list[str],
    start_ms: int | None,
    end_ms: int | None,
    offset: int,
    limit: int,
) -> dict[str, Any]:
    """Builds, deploys, catalogue changes, external change events and alerts of one app,
    newest first (the events and alerts indices)."""
    _page(offset, limit)
    filters: list[dict[str, Any]] = [{"term": {"app": app}}, *_range(start_ms, end_ms)]
    if kinds:
        filters.append({"terms": {"kind": kinds}})
    indices = f"{prefix}-events-*,{prefix}-alerts-*"
    query = {"bool": {"filter": filters}}
    total, found = await _newest_first(es, indices, query, offset, limit)
    events = [
        {
            "ts": iso(src["ts"]),
            "kind": src.get("kind", "ops"),
            "type": src.get("type", ""),
            "subject": src.get("subject", ""),
            "summary": src.get("summary", ""),
            "id": src.get("id", ""),
            "source": src.get("source", ""),
            "data": src.get("data"),
        }
        for src in found
    ]
    return {"app": app, "total": total, "events": events}
