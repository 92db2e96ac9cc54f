"""Fixtures for tests against real components: a migrated store, and anyio on asyncio."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from moorage.store.db import Database


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """moorage runs on asyncio (uvicorn), so its async code is tested there only."""
    return "asyncio"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A fresh database on each store, migrated to head, disposed after the test."""
    database = Database(database_url)
    try:
        database.migrate()
        yield database
    finally:
        database.dispose()
