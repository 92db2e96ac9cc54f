"""Migrations bring an empty database to the schema the code expects, on both stores."""

from __future__ import annotations

from sqlalchemy import inspect

from moorage.store.db import Database


def test_migrations_create_every_table_and_are_idempotent(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        db.migrate()  # a second start must find nothing to do
        tables = set(inspect(db.engine).get_table_names())
        assert {
            "users",
            "api_tokens",
            "flavors",
            "endpoints",
            "replicas",
            "replica_events",
        } <= tables
    finally:
        db.dispose()
