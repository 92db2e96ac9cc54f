"""Alembic environment: runs on the connection moorage hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from moorage.store.tables import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - moorage always passes its connection
    raise RuntimeError("moorage runs migrations itself at start; use `moorage migrate`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
