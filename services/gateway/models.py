"""Identity the gateway owns: API tokens (stored as SHA-256 digests, never in clear)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel


class ApiTokenBase(SQLModel):
    name: str = Field(max_length=100, index=True, unique=True)
    scopes: str = Field(default="admin", max_length=500)  # space-separated
    expires_at: datetime | None = None


class ApiToken(ApiTokenBase, table=True):
    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    revoked_at: datetime | None = None


class ApiTokenPublic(ApiTokenBase):
    id: int
    created_at: datetime
