"""Fixtures shared by every test: stores (SQLite and PostgreSQL) and a fake clock."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.clock import FakeClock
from tests.support import postgres
from tests.support.components import need


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@contextlib.contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of ``kind`` ("sqlite" or "postgresql"), removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'moorage.db'}"
        return
    try:
        server = postgres.admin_url()
    except postgres.PostgresUnavailable as exc:
        need("postgres", str(exc))
        raise
    with postgres.fresh_database(server) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: every store test runs once on each store."""
    with database(request.param, tmp_path) as url:
        yield url
