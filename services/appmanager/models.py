"""The catalogue appmanager owns: apps, their builds, and package versions."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class App(SQLModel, table=True):
    __tablename__ = "apps"

    name: str = Field(primary_key=True, max_length=63)
    team: str = Field(max_length=63, index=True)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # The validated opsline.yaml as canonical JSON (meta, parameters, components, build).
    spec: str = Field(sa_column=Column(Text, nullable=False))
    generation: int = 1
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class Build(SQLModel, table=True):
    """appmanager's view of a build: what was asked, and what build.events said since."""

    __tablename__ = "builds"

    id: str = Field(primary_key=True, max_length=36)
    app: str = Field(max_length=63, index=True)
    version: str = Field(max_length=40)
    components: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of names
    status: str = Field(default="QUEUED", max_length=20)
    steps: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    artifacts: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class PackageVersion(SQLModel, table=True):
    """An immutable, built version of an app: each component's artifact and digest."""

    __tablename__ = "package_versions"
    __table_args__ = (UniqueConstraint("app", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    app: str = Field(max_length=63, index=True)
    version: str = Field(max_length=40)
    build_id: str = Field(max_length=36)
    spec: str = Field(sa_column=Column(Text, nullable=False))  # the app spec it was built from
    artifacts: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=_now)


class Deployment(SQLModel, table=True):
    """appmanager's view of a deployment, from deploy.events."""

    __tablename__ = "deployments"

    id: str = Field(primary_key=True, max_length=36)
    instance: str = Field(max_length=63, index=True)
    app: str = Field(max_length=63, index=True)
    version: str = Field(default="", max_length=40)
    kind: str = Field(max_length=20)  # deploy | upgrade | rollback | uninstall
    state: str = Field(default="CREATED", max_length=20)
    revision: int = 0
    components: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    launch: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class Instance(SQLModel, table=True):
    """An app running somewhere (cluster, namespace, stage): the projection of its deployments."""

    __tablename__ = "instances"

    id: str = Field(primary_key=True, max_length=63)
    app: str = Field(max_length=63, index=True)
    cluster: str = Field(max_length=63)
    namespace: str = Field(max_length=63)
    stage: str = Field(max_length=63)
    version: str = Field(default="", max_length=40)
    revision: int = 0
    state: str = Field(default="CREATED", max_length=20)
    last_deployment: str = Field(default="", max_length=36)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


TABLES: list[type[SQLModel]] = [App, Build, PackageVersion, Deployment, Instance]
