"""Identity data: users, teams, memberships and tokens (hashed; the secret is returned once)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.gateway.models import ApiToken, Membership, Team, Token, User, aware

TOKEN_PREFIX = "opl_"
BOOTSTRAP_USER = "admin"


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens are 256-bit random strings, so one SHA-256 is enough (no password stretching).
    return hashlib.sha256(token.encode()).hexdigest()


def is_live(token: Token, now: datetime | None = None) -> bool:
    """Not revoked and not expired."""
    if token.revoked_at is not None:
        return False
    expires = aware(token.expires_at)
    return expires is None or expires > (now or datetime.now(UTC))


async def get_by_token(*, session: AsyncSession, token: str) -> tuple[Token, User] | None:
    """The live token record and its (enabled) user for a presented token, or None."""
    found = await session.exec(
        select(Token, User)
        .join(User, col(User.id) == col(Token.user_id))
        .where(Token.token_hash == hash_token(token))
    )
    row = found.first()
    if row is None or not is_live(row[0]) or row[1].disabled_at is not None:
        return None
    return row[0], row[1]


async def touch(*, session: AsyncSession, token_id: int) -> None:
    """Remember when a token was last used (at most every few seconds: the auth cache)."""
    token = await session.get(Token, token_id)
    if token is not None:
        token.last_used_at = datetime.now(UTC)
        session.add(token)
        await session.commit()


async def roles_of(*, session: AsyncSession, user_id: int) -> dict[str, str]:
    found = await session.exec(select(Membership).where(Membership.user_id == user_id))
    return {m.team: m.role for m in found}


# ------------------------------------------------------------------ users


async def get_user(*, session: AsyncSession, name: str) -> User:
    found = (await session.exec(select(User).where(User.name == name))).first()
    if found is None:
        raise NotFound(f"no user named {name!r}")
    return found


async def get_all_users(*, session: AsyncSession) -> list[User]:
    return list((await session.exec(select(User).order_by(col(User.name)))).all())


async def create_user(
    *,
    session: AsyncSession,
    name: str,
    display_name: str = "",
    email: str = "",
    platform_admin: bool = False,
    source: str = "local",
) -> User:
    if (await session.exec(select(User).where(User.name == name))).first() is not None:
        raise Conflict(f"user {name!r} already exists")
    user = User(
        name=name,
        display_name=display_name,
        email=email,
        platform_admin=platform_admin,
        source=source,
    )
    session.add(user)
    await session.commit()
    return user


async def ensure_user(*, session: AsyncSession, name: str, source: str) -> User:
    """The user of that name, created (a member of nothing) on first sight."""
    found = (await session.exec(select(User).where(User.name == name))).first()
    if found is not None:
        return found
    try:
        return await create_user(session=session, name=name, source=source)
    except Exception:  # another replica created it first
        await session.rollback()
        return await get_user(session=session, name=name)


async def update_user(*, session: AsyncSession, name: str, changes: dict[str, object]) -> User:
    """Change a user's display name, e-mail, platform admin flag, or enable them again."""
    user = await get_user(session=session, name=name)
    if user.source == "bootstrap" and (
        changes.get("platform_admin") is False or changes.get("disabled") is True
    ):
        raise Conflict("the bootstrap admin stays a platform admin (unset OPSLINE_ADMIN_TOKEN)")
    for key in ("display_name", "email", "platform_admin"):
        if key in changes:
            setattr(user, key, changes[key])
    if "disabled" in changes:
        if changes["disabled"]:
            await session.commit()
            return await disable_user(session=session, name=name)
        user.disabled_at = None  # its tokens stay revoked: make new ones
    session.add(user)
    await session.commit()
    return user


async def disable_user(*, session: AsyncSession, name: str) -> User:
    """Disable a user and revoke every token of theirs (history stays for the audit log)."""
    user = await get_user(session=session, name=name)
    if user.source == "bootstrap":
        raise Conflict("the bootstrap admin cannot be disabled (unset OPSLINE_ADMIN_TOKEN)")
    now = datetime.now(UTC)
    user.disabled_at = now
    session.add(user)
    for token in await session.exec(select(Token).where(Token.user_id == user.id)):
        if token.revoked_at is None:
            token.revoked_at = now
            session.add(token)
    await session.commit()
    return user


# ------------------------------------------------------------------ teams


async def get_team(*, session: AsyncSession, name: str) -> Team:
    team = await session.get(Team, name)
    if team is None:
        raise NotFound(f"no team named {name!r}")
    return team


async def get_all_teams(*, session: AsyncSession) -> list[Team]:
    return list((await session.exec(select(Team).order_by(col(Team.name)))).all())


async def create_team(*, session: AsyncSession, name: str, description: str = "") -> Team:
    if await session.get(Team, name) is not None:
        raise Conflict(f"team {name!r} already exists")
    team = Team(name=name, description=description)
    session.add(team)
    await session.commit()
    return team


async def delete_team(*, session: AsyncSession, name: str) -> None:
    """Forget a team and its memberships; its apps stay (platform admins still see them)."""
    team = await get_team(session=session, name=name)
    for member in await session.exec(select(Membership).where(Membership.team == name)):
        await session.delete(member)
    await session.flush()
    await session.delete(team)
    await session.commit()


async def members(*, session: AsyncSession, team: str) -> list[tuple[User, Membership]]:
    await get_team(session=session, name=team)
    found = await session.exec(
        select(User, Membership)
        .join(Membership, col(Membership.user_id) == col(User.id))
        .where(Membership.team == team)
        .order_by(col(User.name))
    )
    return [(u, m) for u, m in found]


async def set_member(*, session: AsyncSession, team: str, user: str, role: str) -> Membership:
    """Add a user to a team with a role, or change their role."""
    await get_team(session=session, name=team)
    found = await get_user(session=session, name=user)
    assert found.id is not None
    membership = await session.get(Membership, (team, found.id))
    if membership is None:
        membership = Membership(team=team, user_id=found.id, role=role)
    membership.role = role
    session.add(membership)
    await session.commit()
    return membership


async def remove_member(*, session: AsyncSession, team: str, user: str) -> None:
    found = await get_user(session=session, name=user)
    membership = await session.get(Membership, (team, found.id))
    if membership is None:
        raise NotFound(f"{user!r} is not a member of team {team!r}")
    await session.delete(membership)
    await session.commit()


# ------------------------------------------------------------------ tokens


async def create_token(
    *,
    session: AsyncSession,
    user_id: int,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    rate_limit_per_s: float | None = None,
    rate_limit_burst: int | None = None,
) -> tuple[Token, str]:
    """A new token and its secret: the only time the secret exists outside the caller."""
    taken = (
        await session.exec(select(Token).where(Token.user_id == user_id, Token.name == name))
    ).first()
    if taken is not None and is_live(taken):
        raise Conflict(f"you already have a token named {name!r} (revoke it or pick another)")
    if taken is not None:  # a dead token keeps its id and history, and gives up its name
        taken.name = f"{name[:80]}.old-{taken.id}"
        session.add(taken)
        await session.flush()
    secret = new_token()
    token = Token(
        user_id=user_id,
        name=name,
        token_hash=hash_token(secret),
        scopes=" ".join(s for s in ("read", "write", "admin") if s in scopes),
        expires_at=expires_at,
        rate_limit_per_s=rate_limit_per_s,
        rate_limit_burst=rate_limit_burst,
    )
    session.add(token)
    await session.commit()
    return token, secret


async def tokens_of(*, session: AsyncSession, user_id: int) -> list[Token]:
    found = await session.exec(
        select(Token).where(Token.user_id == user_id).order_by(col(Token.id))
    )
    return list(found.all())


async def revoke_token(*, session: AsyncSession, token_id: int, user_id: int | None) -> Token:
    """Revoke a token (of that user; None: of anyone). Revoking twice is not an error."""
    token = await session.get(Token, token_id)
    if token is None or (user_id is not None and token.user_id != user_id):
        raise NotFound(f"no token {token_id} of yours")
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
        session.add(token)
        await session.commit()
    return token


# ------------------------------------------------------------------ bootstrap


async def ensure_admin_token(*, session: AsyncSession, token: str) -> None:
    """The built-in platform admin and its bootstrap token (idempotent; a changed token
    replaces the old one)."""
    user = (await session.exec(select(User).where(User.name == BOOTSTRAP_USER))).first()
    if user is None:
        user = User(name=BOOTSTRAP_USER, platform_admin=True, source="bootstrap")
        session.add(user)
        await session.flush()
    elif not user.platform_admin or user.disabled_at is not None:
        user.platform_admin, user.disabled_at = True, None
        session.add(user)
    assert user.id is not None
    digest = hash_token(token)
    found = await session.exec(select(Token).where(Token.user_id == user.id, Token.name == "admin"))
    row = found.first()
    if row is None:
        session.add(Token(user_id=user.id, name="admin", token_hash=digest))
    elif row.token_hash != digest or row.revoked_at is not None or row.expires_at is not None:
        row.token_hash, row.revoked_at, row.expires_at = digest, None, None
        row.scopes = "read write admin"
        session.add(row)
    await session.commit()


async def carry_over_legacy_tokens(engine: AsyncEngine, *, session: AsyncSession) -> int:
    """Copy tokens of the pre-user `api_tokens` table to the bootstrap admin (once: by hash).

    They were all-powerful, so they stay the admin's; the old table is left as it was.
    """
    async with engine.connect() as conn:
        exists = await conn.run_sync(lambda c: inspect(c).has_table(ApiToken.__tablename__))
    if not exists:
        return 0
    admin = (await session.exec(select(User).where(User.name == BOOTSTRAP_USER))).first()
    if admin is None or admin.id is None:
        return 0
    known = set((await session.exec(select(Token.token_hash))).all())
    names = set((await session.exec(select(Token.name).where(Token.user_id == admin.id))).all())
    copied = 0
    for old in await session.exec(select(ApiToken)):
        if old.token_hash in known or old.name == "admin":
            continue
        name = old.name if old.name not in names else f"{old.name}-legacy-{old.id}"
        session.add(
            Token(
                user_id=admin.id,
                name=name,
                token_hash=old.token_hash,
                scopes="read write admin",
                expires_at=old.expires_at,
                created_at=old.created_at,
                revoked_at=old.revoked_at,
            )
        )
        copied += 1
    await session.commit()
    return copied
