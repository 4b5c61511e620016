"""Alembic environment of appmanager: run by libs.db.migrate.upgrade on a live connection."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from libs.events.idempotency import ProcessedEvent
from libs.events.outbox import OutboxMessage
from services.appmanager.models import TABLES

_tables = [m.__table__ for m in (*TABLES, OutboxMessage, ProcessedEvent)]  # type: ignore[attr-defined]
target_metadata = SQLModel.metadata


def _include(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    return type_ != "table" or name in {t.name for t in _tables}


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run appmanager migrations through libs.db.migrate.upgrade")
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    include_object=_include,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
