"""Service-to-service HTTP: the gateway calls an owner's API with a shared internal token."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Header, HTTPException, status
from pydantic import SecretStr


def internal_token_guard(token: SecretStr | None) -> Callable[[str | None], None]:
    """A dependency that accepts only `Authorization: Bearer <internal token>`."""

    def guard(authorization: str | None = Header(default=None)) -> None:
        if token is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "internal API disabled: OPSLINE_INTERNAL_TOKEN is not set",
            )
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.encode(), token.get_secret_value().encode()
        ):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or invalid internal token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return guard
