"""Fixtures shared by every test: stores (SQLite and PostgreSQL) and a fake clock; how
many worker processes a run gets (tests/support/parallel.py)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.clock import FakeClock
from tests.support import basetemp, parallel, postgres
from tests.support.components import need


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (the default in pyproject.toml): see tests/support/parallel.py."""
    try:
        return parallel.workers(config.args, config.invocation_params.dir, os.environ)
    except parallel.WorkerCountError as exc:
        raise pytest.UsageError(str(exc)) from exc


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A short folder for the run's temporary files (see tests/support/basetemp.py),
    unless ``--basetemp`` names one; workers get theirs inside it.

    With workers, one throwaway PostgreSQL cluster serves them all: it is started here,
    in the process that starts them, and they inherit its URL (stopped at exit)."""
    if hasattr(config, "workerinput"):
        return
    if config.option.basetemp is None:
        config.option.basetemp = str(basetemp.new_basetemp())
    if getattr(config.option, "numprocesses", 0) and not os.environ.get(postgres.ENV_URL):
        with contextlib.suppress(postgres.PostgresUnavailable):
            # Without a cluster each worker tries again and says why it cannot.
            os.environ[postgres.ENV_URL] = postgres.admin_url()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first (tests/support/parallel.py); a file's tests keep their
    order. Every worker collects the same order, as pytest-xdist requires."""
    root = config.rootpath

    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(root) if item.path.is_relative_to(root) else item.path
        return parallel.file_rank(path.as_posix())

    items.sort(key=rank)


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
