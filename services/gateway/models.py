"""Identity the gateway owns: users, teams, memberships, API tokens (stored as SHA-256
digests, never in clear), the audit log, and which team owns each app (a projection)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"  # the appmanager's rule for team names
USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$"  # OIDC names are e-mail addresses too
ROLES = ("viewer", "maintainer", "admin")
SCOPES = ("read", "write", "admin")


def _now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite and MySQL give naive datetimes back; they were written as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class ApiToken(SQLModel, table=True):
    """The token table before users existed; read once at start-up to carry tokens over."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, index=True, unique=True)
    scopes: str = Field(default="admin", max_length=500)
    expires_at: datetime | None = None
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=_now)
    revoked_at: datetime | None = None


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True, index=True)
    display_name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=320)
    platform_admin: bool = False
    source: str = Field(default="local", max_length=20)  # local | oidc | bootstrap
    created_at: datetime = Field(default_factory=_now)
    disabled_at: datetime | None = None


class Team(SQLModel, table=True):
    __tablename__ = "teams"

    name: str = Field(primary_key=True, max_length=63)
    description: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=_now)


class Membership(SQLModel, table=True):
    __tablename__ = "memberships"

    team: str = Field(primary_key=True, max_length=63, foreign_key="teams.name")
    user_id: int = Field(primary_key=True, foreign_key="users.id", index=True)
    role: str = Field(max_length=20)
    created_at: datetime = Field(default_factory=_now)


class Token(SQLModel, table=True):
    """An API token of a user; scopes narrow what the user's roles allow."""

    __tablename__ = "tokens"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_tokens_user_name"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    scopes: str = Field(default="read write admin", max_length=100)  # space-separated
    expires_at: datetime | None = None
    created_at: datetime = Field(default_factory=_now)
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    # Lower than the gateway's limit for this token only (a CI script, say); None: the default.
    rate_limit_per_s: float | None = None
    rate_limit_burst: int | None = None


class AuditRecord(SQLModel, table=True):
    """One mutating request: who, what, when, outcome. Never bodies or credentials."""

    __tablename__ = "audit_records"

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(default_factory=_now, index=True)
    request_id: str = Field(max_length=100)
    user: str = Field(default="", max_length=100, index=True)
    token_id: int | None = None
    method: str = Field(max_length=10)
    path: str = Field(max_length=2000)
    route: str = Field(default="", max_length=300)
    team: str = Field(default="", max_length=63, index=True)
    app: str = Field(default="", max_length=63)
    status: int
    outcome: str = Field(max_length=20)  # ok | denied | rejected | failed
    reason: str = Field(default="", max_length=500)
    duration_ms: float
    client: str = Field(default="", max_length=100)


class AppOwner(SQLModel, table=True):
    """app → team, folded from app.events (and filled on a miss from the appmanager)."""

    __tablename__ = "app_owners"

    app: str = Field(primary_key=True, max_length=63)
    team: str = Field(max_length=63, index=True)
    updated_at: datetime = Field(default_factory=_now)


TABLES: list[type[SQLModel]] = [User, Team, Membership, Token, AuditRecord, AppOwner]
