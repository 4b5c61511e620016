"""The alert manager's tables: rules, alerts, incidents, silences, receivers, deployments.

Times are epoch milliseconds (BigInteger): the same on SQLite, PostgreSQL and MySQL,
where datetimes differ in time-zone handling. Lists and maps are JSON text.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, Text
from sqlmodel import Field, SQLModel


def _ms(*, nullable: bool = False, index: bool = False, default: Any = ...) -> Any:
    if nullable and default is ...:
        default = None
    return Field(default=default, sa_column=Column(BigInteger, nullable=nullable, index=index))


def _json(default: str = "{}") -> Any:
    return Field(default=default, sa_column=Column(Text, nullable=False))


def loads(text: str) -> Any:
    return orjson.loads(text)


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class AlertRule(SQLModel, table=True):
    __tablename__ = "alert_rule"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=100, index=True)
    spec: str = _json()
    created_at: int = _ms()
    updated_at: int = _ms()


class Alert(SQLModel, table=True):
    __tablename__ = "alert"

    fingerprint: str = Field(primary_key=True, max_length=32)
    rule_id: str = Field(max_length=40, index=True)
    rule_name: str = Field(max_length=100)
    app: str = Field(default="", max_length=200, index=True)
    state: str = Field(max_length=16, index=True)  # firing | resolved
    severity: str = Field(max_length=16)
    labels: str = _json()
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    value: float = 0.0
    score: float = 0.0
    starts_at: int = _ms()
    updated_at: int = _ms()
    ends_at: int | None = _ms(nullable=True)
    last_ts: int = _ms()  # sample time of the last signal applied (older ones are stale)
    incident_id: str | None = Field(default=None, max_length=40, index=True)


class Incident(SQLModel, table=True):
    __tablename__ = "incident"

    id: str = Field(primary_key=True, max_length=40)
    rule_id: str = Field(max_length=40, index=True)
    rule_name: str = Field(max_length=100)
    app: str = Field(default="", max_length=200, index=True)
    state: str = Field(max_length=16, index=True)  # open | closed
    severity: str = Field(max_length=16)
    occurrences: int = 0
    first_seen: int = _ms()
    last_seen: int = _ms()
    firing: int = 0  # alerts of this incident firing now
    recovered_at: int | None = _ms(nullable=True)
    closed_at: int | None = _ms(nullable=True)
    deployment_id: str | None = Field(default=None, max_length=100)
    deployment: str = _json()  # what we know of it: instance, version, state, times


class Silence(SQLModel, table=True):
    __tablename__ = "silence"

    id: str = Field(primary_key=True, max_length=40)
    matchers: str = _json("[]")
    starts_at: int = _ms()
    ends_at: int = _ms()
    comment: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_by: str = Field(default="", max_length=200)
    created_at: int = _ms()


class Receiver(SQLModel, table=True):
    __tablename__ = "receiver"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=100, unique=True)
    kind: str = Field(max_length=20)  # webhook | alertmanager
    url: str = Field(sa_column=Column(Text, nullable=False))
    headers: str = _json()  # secret: never returned by the API, never logged
    matchers: str = _json("[]")
    group_by: str = _json('["app", "alertname"]')
    group_wait_s: float = 30.0
    group_interval_s: float = 300.0
    repeat_interval_s: float = 14400.0
    send_resolved: bool = True
    created_at: int = _ms()
    updated_at: int = _ms()


class NotificationGroup(SQLModel, table=True):
    """Alerts of one receiver sharing the group-by labels: notified together."""

    __tablename__ = "notification_group"

    id: str = Field(primary_key=True, max_length=64)  # receiver id + hash of the group key
    receiver_id: str = Field(max_length=40, index=True)
    group_key: str = Field(sa_column=Column(Text, nullable=False))
    group_labels: str = _json()
    # fingerprint → severity last sent ("": not told yet); resolved ones leave once told
    members: str = _json()
    due_at: int | None = _ms(nullable=True, index=True)  # next flush; None: nothing pending
    last_sent_at: int | None = _ms(nullable=True)
    claimed_until: int = _ms(default=0)
    sent: int = 0
    failures: int = 0
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False))


class Deployment(SQLModel, table=True):
    """Deployments as deploy.events told us (for change correlation)."""

    __tablename__ = "deployment"

    deployment_id: str = Field(primary_key=True, max_length=100)
    app: str = Field(default="", max_length=200, index=True)
    instance: str = Field(default="", max_length=200)
    version: str = Field(default="", max_length=100)
    state: str = Field(default="", max_length=40)
    started_at: int = _ms()
    updated_at: int = _ms()


TABLES: list[type[SQLModel]] = [
    AlertRule,
    Alert,
    Incident,
    Silence,
    Receiver,
    NotificationGroup,
    Deployment,
]
