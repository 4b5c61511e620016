"""The OpenAPI document as the routes really answer, so generated clients and fuzzers agree.

FastAPI documents a 422's `detail` as its own list of field errors only, and knows nothing
of the bearer token that `access.authorize` (an app-wide dependency) demands. Our routes
also answer 422 with a reason as a string, and owners behind the gateway with
`{"message", "errors"}`; every /v1 operation needs the token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

SCHEME = "bearer"


def describe(app: FastAPI) -> None:
    """Wrap the app's document generator: widened error details, the bearer scheme."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        doc = generate()  # FastAPI keeps it in app.openapi_schema: amend it once
        if first:
            _widen_error_detail(doc)
            _require_bearer(doc)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _widen_error_detail(doc: dict[str, Any]) -> None:
    schemas = doc.get("components", {}).get("schemas", {})
    error = schemas.get("HTTPValidationError")
    if error is None:
        return
    listed = error["properties"]["detail"]
    error["properties"]["detail"] = {
        "title": "Detail",
        "description": "a reason, FastAPI's field errors, or an owner's {message, errors}",
        "anyOf": [
            {"type": "string"},
            {k: v for k, v in listed.items() if k != "title"},
            {"type": "object"},
        ],
    }


def _require_bearer(doc: dict[str, Any]) -> None:
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an opsline API token (opl_…) or, when configured, an OIDC JWT",
    }
    for path, operations in doc.get("paths", {}).items():
        if path.startswith("/v1/"):
            for operation in operations.values():
                operation.setdefault("security", [{SCHEME: []}])
