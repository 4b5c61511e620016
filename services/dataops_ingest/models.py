"""Scrape targets: the one table dataops-ingest owns, and its request/response models."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

MAX_TARGET_LABELS = 30
_JOB = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}$")
_APP = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,99}$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$")
# job and instance come from the target itself (its job name and URL); __* is internal.
RESERVED_LABELS = ("job",)
Health = Literal["unknown", "up", "down"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; they were written as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def check_url(value: str) -> str:
    """An http(s) URL with a host and no credentials; an empty path becomes /metrics."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"url: scheme must be http or https, not {parts.scheme or 'none'!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("url: credentials in the URL are not accepted")
    host = parts.hostname or ""
    if not host:
        raise ValueError("url: a host is required")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST.match(host):
            raise ValueError(f"url: {host[:64]!r} is not a valid host name") from None
    try:
        port = parts.port
    except ValueError:
        raise ValueError("url: the port is not a number between 0 and 65535") from None
    if port == 0:
        raise ValueError("url: port 0 cannot be scraped")
    if parts.fragment:
        raise ValueError("url: a fragment (#…) has no meaning for a scrape")
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/metrics", parts.query, ""))


def instance_of(url: str) -> str:
    """The `instance` label of a target: host:port as Prometheus writes it."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > MAX_TARGET_LABELS:
        raise ValueError(f"labels: at most {MAX_TARGET_LABELS} labels")
    for key, value in labels.items():
        if not _LABEL.match(key) or key.startswith("__"):
            raise ValueError(f"labels: {key[:64]!r} is not a valid label name")
        if key in RESERVED_LABELS:
            raise ValueError(f"labels: {key!r} is set from the target's job name")
        if len(value) > 1024:
            raise ValueError(f"labels.{key}: longer than 1024 characters")
    return labels


class ScrapeTargetBase(BaseModel):
    """What a user says about a target; the interval bounds and checks are shared."""

    model_config = ConfigDict(extra="forbid")

    job: Annotated[str, Field(description="job label of every scraped series")]
    url: Annotated[str, Field(description="http(s)://host:port/path; empty path: /metrics")]
    interval_s: Annotated[float, Field(ge=1, le=86_400)] = 15.0
    timeout_s: Annotated[float, Field(gt=0, le=3_600)] = 10.0
    labels: dict[str, str] = Field(default_factory=dict)
    app: str | None = Field(default=None, description="the app the target belongs to")
    honor_labels: bool = Field(
        default=False,
        description="on a clash, keep the page's labels (true) or the target's, renaming "
        "the page's to exported_<name> (false, as Prometheus)",
    )

    @field_validator("job")
    @classmethod
    def _job(cls, value: str) -> str:
        if not _JOB.match(value):
            raise ValueError("job: 1-100 characters of letters, digits, _ . : -")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return check_labels(value)

    @field_validator("app")
    @classmethod
    def _app(cls, value: str | None) -> str | None:
        if value is not None and not _APP.match(value):
            raise ValueError("app: lowercase letters, digits and -, at most 63 characters")
        return value

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> ScrapeTargetBase:
        if self.timeout_s >= self.interval_s:
            raise ValueError(
                f"timeout_s ({self.timeout_s}) must be less than interval_s ({self.interval_s})"
            )
        return self


class ScrapeTargetCreate(ScrapeTargetBase):
    pass


class ScrapeTargetUpdate(BaseModel):
    """A partial update: only the fields given change (then the whole target is checked)."""

    model_config = ConfigDict(extra="forbid")

    job: str | None = None
    url: str | None = None
    interval_s: float | None = None
    timeout_s: float | None = None
    labels: dict[str, str] | None = None
    app: str | None = None
    honor_labels: bool | None = None


class ScrapeTarget(SQLModel, table=True):
    __tablename__ = "scrape_targets"
    __table_args__ = (UniqueConstraint("job", "url", name="uq_scrape_targets_job_url"),)

    id: str = SQLField(primary_key=True, max_length=36)
    job: str = SQLField(max_length=100)
    url: str = SQLField(max_length=2000)
    interval_s: float = 15.0
    timeout_s: float = 10.0
    labels: str = SQLField(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    app: str | None = SQLField(default=None, max_length=63, index=True)
    honor_labels: bool = False
    # "api" (a user registered it) or "kubernetes" (discovery keeps it in step with a pod)
    source: str = SQLField(default="api", max_length=20)
    # For discovered targets: namespace/pod, so discovery finds its own rows.
    discovery_key: str | None = SQLField(default=None, max_length=300, index=True)
    health: str = SQLField(default="unknown", max_length=10)
    last_scrape: datetime | None = None
    last_error: str | None = SQLField(default=None, sa_column=Column(Text, nullable=True))
    last_duration_s: float | None = None
    last_samples: int | None = None
    created_at: datetime = SQLField(default_factory=utcnow)
    updated_at: datetime = SQLField(default_factory=utcnow)


class ScrapeTargetPublic(BaseModel):
    id: str
    job: str
    url: str
    instance: str
    interval_s: float
    timeout_s: float
    labels: dict[str, str]
    app: str | None
    honor_labels: bool
    source: str
    health: Health
    last_scrape: datetime | None
    last_error: str | None
    last_duration_s: float | None
    last_samples: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: ScrapeTarget, labels: dict[str, Any]) -> ScrapeTargetPublic:
        return cls(
            id=row.id,
            job=row.job,
            url=row.url,
            instance=instance_of(row.url),
            interval_s=row.interval_s,
            timeout_s=row.timeout_s,
            labels=labels,
            app=row.app,
            honor_labels=row.honor_labels,
            source=row.source,
            health=row.health,  # type: ignore[arg-type]
            last_scrape=as_utc(row.last_scrape),
            last_error=row.last_error,
            last_duration_s=row.last_duration_s,
            last_samples=row.last_samples,
            created_at=as_utc(row.created_at) or row.created_at,
            updated_at=as_utc(row.updated_at) or row.updated_at,
        )


TABLES = [ScrapeTarget]
