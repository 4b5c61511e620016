"""Scrape targets: create, read, update, delete, health, and the rows discovery keeps."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import orjson
from pydantic import ValidationError
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dataops_ingest.models import (
    ScrapeTarget,
    ScrapeTargetCreate,
    ScrapeTargetPublic,
    ScrapeTargetUpdate,
    utcnow,
)

API = "api"
KUBERNETES = "kubernetes"


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    """Another target has the same job and URL, or the target is not the API's to change."""


class Invalid(ValueError):
    """The merged target does not validate; the text says which field."""


@dataclass(slots=True)
class Status:
    """The outcome of one scrape, written back in batches by the scraper."""

    health: str
    at: datetime
    error: str | None
    duration_s: float
    samples: int


def labels_of(row: ScrapeTarget) -> dict[str, str]:
    value = orjson.loads(row.labels or "{}")
    return value if isinstance(value, dict) else {}


def public(row: ScrapeTarget) -> ScrapeTargetPublic:
    return ScrapeTargetPublic.of(row, labels_of(row))


async def get(session: AsyncSession, *, target_id: str) -> ScrapeTarget | None:
    """A target by id, or None."""
    return await session.get(ScrapeTarget, target_id)


async def get_all(
    session: AsyncSession,
    *,
    job: str | None = None,
    app: str | None = None,
    source: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[ScrapeTarget]:
    """Targets ordered by job and URL, optionally filtered."""
    query = select(ScrapeTarget).order_by(col(ScrapeTarget.job), col(ScrapeTarget.url))
    if job is not None:
        query = query.where(ScrapeTarget.job == job)
    if app is not None:
        query = query.where(ScrapeTarget.app == app)
    if source is not None:
        query = query.where(ScrapeTarget.source == source)
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list((await session.exec(query)).all())


def _apply(row: ScrapeTarget, spec: ScrapeTargetCreate) -> None:
    row.job = spec.job
    row.url = spec.url
    row.interval_s = spec.interval_s
    row.timeout_s = spec.timeout_s
    row.labels = orjson.dumps(spec.labels, option=orjson.OPT_SORT_KEYS).decode()
    row.app = spec.app
    row.honor_labels = spec.honor_labels
    row.updated_at = utcnow()


async def create(
    session: AsyncSession,
    *,
    spec: ScrapeTargetCreate,
    source: str = API,
    discovery_key: str | None = None,
    target_id: str | None = None,
) -> ScrapeTarget:
    """A new target; Conflict if one with the same job and URL exists."""
    target_id = target_id or str(uuid.uuid4())
    row = ScrapeTarget(id=target_id, source=source, discovery_key=discovery_key, job="", url="")
    _apply(row, spec)
    session.add(row)
    await _commit(session, spec)
    return row


async def update(
    session: AsyncSession, *, target_id: str, changes: ScrapeTargetUpdate
) -> ScrapeTarget:
    """Change the given fields; the merged target is validated as a whole."""
    row = await get(session, target_id=target_id)
    if row is None:
        raise NotFound(target_id)
    if row.source != API:
        raise Conflict(f"target {target_id} is managed by {row.source} discovery")
    merged = {
        "job": row.job,
        "url": row.url,
        "interval_s": row.interval_s,
        "timeout_s": row.timeout_s,
        "labels": labels_of(row),
        "app": row.app,
        "honor_labels": row.honor_labels,
    } | changes.model_dump(exclude_unset=True)
    try:
        spec = ScrapeTargetCreate.model_validate(merged)
    except ValidationError as exc:
        raise Invalid(_first_error(exc)) from None
    _apply(row, spec)
    session.add(row)
    await _commit(session, spec)
    return row


async def delete(session: AsyncSession, *, target_id: str) -> None:
    row = await get(session, target_id=target_id)
    if row is None:
        raise NotFound(target_id)
    if row.source != API:
        raise Conflict(f"target {target_id} is managed by {row.source} discovery")
    await session.delete(row)
    await session.commit()


async def _commit(session: AsyncSession, spec: ScrapeTargetCreate) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"a target of job {spec.job!r} with URL {spec.url} exists") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "body"
    return f"{where}: {err.get('msg', 'invalid')}"


async def record_status(session: AsyncSession, *, statuses: dict[str, Status]) -> None:
    """Write the latest scrape outcome of each target in one statement (rows that are
    gone match nothing): the write lock is held for one round trip, not one per target."""
    if not statuses:
        return
    rows = [
        {
            "id": target_id,
            "health": status.health,
            "last_scrape": status.at,
            "last_error": status.error,
            "last_duration_s": round(status.duration_s, 6),
            "last_samples": status.samples,
        }
        for target_id, status in statuses.items()
    ]
    known = set(
        (
            await session.exec(
                select(ScrapeTarget.id).where(col(ScrapeTarget.id).in_(list(statuses)))
            )
        ).all()
    )
    rows = [r for r in rows if r["id"] in known]
    if rows:
        await session.exec(sql_update(ScrapeTarget), params=rows)  # type: ignore[call-overload]
    await session.commit()


async def sync_discovered(
    session: AsyncSession, *, source: str, wanted: dict[str, ScrapeTargetCreate]
) -> tuple[int, int, int]:
    """Make the rows of `source` exactly `wanted` (by discovery key); (added, changed, removed).

    Ids are derived from the key, so two replicas that discover the same pod write the
    same row.
    """
    rows = {r.discovery_key: r for r in await get_all(session, source=source)}
    added = changed = removed = 0
    for key, row in rows.items():
        if key not in wanted:
            await session.delete(row)
            removed += 1
    for key, spec in wanted.items():
        found = rows.get(key)
        if found is None:
            target_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"opsline:{source}:{key}"))
            row = ScrapeTarget(id=target_id, source=source, discovery_key=key, job="", url="")
            added += 1
        elif _same(found, spec):
            continue
        else:
            row = found
            changed += 1
        _apply(row, spec)
        session.add(row)
    try:
        await session.commit()
    except IntegrityError:  # another replica wrote the same rows first: next round agrees
        await session.rollback()
        return 0, 0, 0
    return added, changed, removed


def _same(row: ScrapeTarget, spec: ScrapeTargetCreate) -> bool:
    return (
        row.job == spec.job
        and row.url == spec.url
        and row.interval_s == spec.interval_s
        and row.timeout_s == spec.timeout_s
        and labels_of(row) == spec.labels
        and row.app == spec.app
        and row.honor_labels == spec.honor_labels
    )
