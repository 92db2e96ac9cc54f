"""How many worker processes a test run gets and in what order its files come
(tests/support/parallel.py); where its temporary files go (tests/support/basetemp.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.support import basetemp
from tests.support.parallel import (
    DEFAULT_WORKERS,
    ENV_WORKERS,
    SLOWEST,
    WorkerCountError,
    file_rank,
    workers,
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "unit").mkdir()
    for name in ("test_a.py", "test_b.py"):
        (tmp_path / "unit" / name).write_text("")
    return tmp_path


def test_the_whole_suite_gets_the_default_workers(tree: Path) -> None:
    assert workers([], tree, {}) == DEFAULT_WORKERS
    assert workers(["unit"], tree, {}) == DEFAULT_WORKERS


def test_one_file_or_one_test_runs_without_workers(tree: Path) -> None:
    assert workers(["unit/test_a.py"], tree, {}) == 0
    assert workers(["unit/test_a.py::test_x", "-k", "x"], tree, {}) == 0
    assert workers(["unit/test_a.py::test_x", "unit/test_a.py::test_y"], tree, {}) == 0


def test_a_few_files_get_a_worker_each(tree: Path) -> None:
    assert workers(["unit/test_a.py", "unit/test_b.py"], tree, {}) == 2


def test_the_environment_sets_the_count(tree: Path) -> None:
    assert workers(["unit/test_a.py"], tree, {ENV_WORKERS: "3"}) == 3
    assert workers([], tree, {ENV_WORKERS: "0"}) == 0


@pytest.mark.parametrize("bad", ["-1", "many", "65"])
def test_a_count_that_is_not_one_says_what_is_allowed(tree: Path, bad: str) -> None:
    with pytest.raises(WorkerCountError, match=f"{ENV_WORKERS} must be a whole number"):
        workers([], tree, {ENV_WORKERS: bad})


def test_the_longest_files_come_first_then_servers_then_unit() -> None:
    ranks = [
        file_rank(path)
        for path in (
            SLOWEST[0],
            SLOWEST[-1],
            "tests/e2e/test_tenants.py",
            "tests/integration/test_store_budgets.py",
            "tests/unit/test_plan.py",
        )
    ]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)


def test_a_runs_folder_is_short_and_outlives_it_only_among_the_last_few(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folders = [basetemp.new_basetemp() for _ in range(basetemp.KEEP + 3)]
    # Every one is held by this (live) process: none is removed under a running run.
    assert all(folder.is_dir() for folder in folders)
    assert len(str(folders[0].relative_to(tmp_path))) <= len("mrg-65535/12345678")
    for lock in basetemp._held[-len(folders) :]:
        lock.close()  # the runs end
    basetemp._held[-len(folders) :] = []
    newest = basetemp.new_basetemp()
    kept = [f for f in folders if f.is_dir()]
    assert newest.is_dir()
    assert len(kept) == basetemp.KEEP, kept
