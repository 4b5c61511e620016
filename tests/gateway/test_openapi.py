"""/openapi.json says what the routes do: the bearer token on /v1, string error details."""

from __future__ import annotations

from pathlib import Path

import jsonschema_rs

from tests.gateway.conftest import make_app


def test_every_v1_operation_declares_the_bearer_token(tmp_path: Path) -> None:
    doc = make_app(tmp_path).openapi()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operations = [
        (method, path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if path.startswith("/v1/")
    ]
    assert len(operations) > 40
    unguarded = [f"{m.upper()} {p}" for m, p, op in operations if op.get("security") is None]
    assert not unguarded


def test_error_detail_may_be_a_reason_a_field_list_or_an_owners_object(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    doc = app.openapi()
    assert app.openapi() is doc  # amended once, then served as is
    error = {"$ref": "#/components/schemas/HTTPValidationError", **doc}
    validator = jsonschema_rs.validator_for(error)
    field = {"loc": ["query", "limit"], "msg": "too big", "type": "less_than_equal"}
    for detail in ("end is before start", [field], {"message": "invalid", "errors": []}):
        assert validator.is_valid({"detail": detail}), detail
    assert not validator.is_valid({"detail": 3})
