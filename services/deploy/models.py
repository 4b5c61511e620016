"""What the deploy service owns: deployments as a durable queue, and each instance's revisions."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

ACTIVE = ("PROCESSING", "WAITING", "ROLLING_BACK")
FINAL = ("SUCCESS", "FAILURE", "TERMINATED", "ROLLED_BACK")
# WAIT_FOR_OP: some components failed; an operator retries it, rolls the instance back, or
# terminates it. It does not hold the instance: the next deployment supersedes it.
RETRYABLE = ("WAIT_FOR_OP", "FAILURE")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; they were written as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class DeployTask(SQLModel, table=True):
    __tablename__ = "deploy_tasks"
    __table_args__ = (Index("ix_deploy_tasks_state_created", "state", "created_at"),)

    deployment_id: str = Field(primary_key=True, max_length=36)
    instance: str = Field(max_length=63, index=True)
    kind: str = Field(max_length=20)  # deploy | rollback | uninstall
    state: str = Field(default="CREATED", max_length=20)
    request: str = Field(sa_column=Column(Text, nullable=False))
    revision: int = 0
    attempt: int = 0
    worker: str | None = Field(default=None, max_length=200)
    heartbeat_at: datetime | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    components: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Revision(SQLModel, table=True):
    """One rollout of an instance: what ran (the full request), and whether it came up."""

    __tablename__ = "instance_revisions"

    instance: str = Field(primary_key=True, max_length=63)
    revision: int = Field(primary_key=True)
    deployment_id: str = Field(max_length=36)
    request: str = Field(sa_column=Column(Text, nullable=False))
    good: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class InstanceState(SQLModel, table=True):
    __tablename__ = "instance_states"

    instance: str = Field(primary_key=True, max_length=63)
    cluster: str = Field(max_length=63)
    namespace: str = Field(max_length=63)
    current_revision: int = 0
    # The drift last announced ("" when in sync), so each change is announced once.
    drift: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    updated_at: datetime = Field(default_factory=utcnow)


class Termination(SQLModel, table=True):
    """A request to stop a deployment that is in progress; its worker acts on it."""

    __tablename__ = "deploy_terminations"

    deployment_id: str = Field(primary_key=True, max_length=36)
    requested_at: datetime = Field(default_factory=utcnow)


TABLES: list[type[SQLModel]] = [DeployTask, Revision, InstanceState, Termination]
