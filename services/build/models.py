"""The build tasks this service owns: one row per build_id, the durable queue of work."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Column, DateTime, Index, Text
from sqlalchemy.dialects.mysql import DATETIME, LONGTEXT
from sqlmodel import Field, SQLModel

# MySQL's TEXT stops at 64 KiB; a request with many components and traits may not.
_LONG_TEXT = Text().with_variant(LONGTEXT(), "mysql", "mariadb")
# MySQL's DATETIME keeps whole seconds unless asked for more; queue order needs better.
_TIMESTAMP = DateTime(timezone=True).with_variant(DATETIME(fsp=6), "mysql", "mariadb")


class BuildStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL = frozenset({BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELLED})


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite and MySQL hand back naive datetimes; every stored value is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _timestamp() -> Any:
    return Field(default=None, sa_column=Column(_TIMESTAMP, nullable=True))


class BuildTaskBase(SQLModel):
    build_id: str = Field(primary_key=True, max_length=100)
    app: str = Field(max_length=200, index=True)
    version: str = Field(default="", max_length=100)
    status: str = Field(default=BuildStatus.QUEUED.value, max_length=20)
    attempt: int = 1
    worker: str | None = Field(default=None, max_length=255)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class BuildTask(BuildTaskBase, table=True):
    __tablename__ = "build_tasks"
    # The queue's scan: by status, oldest first. Also what lets InnoDB lock only the rows a
    # claim takes (without it every QUEUED row is locked, and SKIP LOCKED skips them all).
    __table_args__ = (Index("ix_build_tasks_queue", "status", "created_at", "build_id"),)

    # Set by cancel_requested while RUNNING; the owning worker stops the build.
    cancel_requested: bool = False
    heartbeat_at: datetime | None = _timestamp()
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(_TIMESTAMP, nullable=False)
    )
    started_at: datetime | None = _timestamp()
    finished_at: datetime | None = _timestamp()
    # The BuildRequested as protobuf JSON, and the artifacts (a JSON list) once built.
    request: str = Field(sa_column=Column(_LONG_TEXT, nullable=False))
    artifacts: str = Field(default="[]", sa_column=Column(_LONG_TEXT, nullable=False))


class BuildTaskPublic(BuildTaskBase):
    """What the read API returns (never the table class itself)."""

    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    artifacts: list[dict[str, Any]]

    @classmethod
    def from_task(cls, task: BuildTask) -> BuildTaskPublic:
        return cls(
            build_id=task.build_id,
            app=task.app,
            version=task.version,
            status=task.status,
            attempt=task.attempt,
            worker=task.worker,
            reason=task.reason,
            cancel_requested=task.cancel_requested,
            created_at=as_utc(task.created_at) or utcnow(),
            started_at=as_utc(task.started_at),
            finished_at=as_utc(task.finished_at),
            heartbeat_at=as_utc(task.heartbeat_at),
            artifacts=orjson.loads(task.artifacts),
        )


TABLES: list[type[SQLModel]] = [BuildTask]
