"""Token checks: hash the presented token, look it up, refuse revoked or expired ones."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.gateway.models import ApiToken

TOKEN_PREFIX = "opl_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens are 256-bit random strings, so one SHA-256 is enough (no password stretching).
    return hashlib.sha256(token.encode()).hexdigest()


async def get_by_token(*, session: AsyncSession, token: str) -> ApiToken | None:
    """The live token record for a presented token, or None."""
    result = await session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    row = result.first()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None:
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        if expires <= datetime.now(UTC):
            return None
    return row


async def ensure_admin_token(*, session: AsyncSession, token: str) -> None:
    """Install the bootstrap admin token (idempotent; a changed token replaces the old one)."""
    digest = hash_token(token)
    result = await session.exec(select(ApiToken).where(ApiToken.name == "admin"))
    row = result.first()
    if row is None:
        session.add(ApiToken(name="admin", token_hash=digest, scopes="admin"))
    elif row.token_hash != digest or row.revoked_at is not None:
        row.token_hash = digest
        row.revoked_at = None
        session.add(row)
    await session.commit()
