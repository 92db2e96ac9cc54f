"""How many worker processes a test run gets (tests/support/parallel.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.parallel import DEFAULT_WORKERS, ENV_WORKERS, WorkerCountError, workers


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
