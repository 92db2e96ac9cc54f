"""How many pytest-xdist workers a run gets.

Most of the suite waits on real servers, replicas and sockets rather than on the
CPU, so several test files run at once in worker processes (``--dist loadfile``:
a file's tests, and so its module-scoped ``moorage serve``, stay in one worker).
A run of one file gets no workers: starting them would cost more than it saves.
``MOORAGE_TEST_WORKERS`` sets the count (0: everything in this process).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

ENV_WORKERS = "MOORAGE_TEST_WORKERS"
# Measured on a 2-core CI machine: 4 workers keep it busy while most wait on servers.
DEFAULT_WORKERS = 4
_MANY = 1 << 16  # a folder holds an unknown number of files


class WorkerCountError(ValueError):
    pass


def _files_named(args: Sequence[str], cwd: Path) -> int:
    """How many test files the paths among ``args`` (``path`` or ``path::test``) name."""
    files = set()
    for arg in args:
        if arg.startswith("-"):
            continue
        path = (cwd / arg.split("::", 1)[0]).resolve()
        if path.is_dir():
            return _MANY
        if path.is_file():
            files.add(path)
    return len(files)


def workers(args: Sequence[str], cwd: Path, environ: Mapping[str, str]) -> int:
    """Workers for a run given its command-line paths: ``MOORAGE_TEST_WORKERS`` when set,
    else none for at most one file and ``DEFAULT_WORKERS`` at most, one per file."""
    wanted = environ.get(ENV_WORKERS, "").strip()
    if wanted:
        if not wanted.isdigit() or int(wanted) > 64:
            raise WorkerCountError(
                f"{ENV_WORKERS} must be a whole number from 0 to 64, not {wanted!r}"
            )
        return int(wanted)
    files = _files_named(args, cwd) if args else _MANY
    return 0 if files <= 1 else min(files, DEFAULT_WORKERS)


# The longest files (minutes under load): started first, so that none is left to run
# alone at the end. Then the rest of e2e and security (real servers), integration,
# and the many short unit files, which fill the gaps.
SLOWEST = (
    "tests/security/test_openapi_contract.py",
    "tests/e2e/test_dashboard.py",
    "tests/e2e/test_crash_safety.py",
    "tests/e2e/test_readme_containers.py",
    "tests/security/test_admin_token.py",
    "tests/e2e/test_serve.py",
    "tests/e2e/test_billing_crash.py",
    "tests/e2e/test_autoscaling.py",
)
_FOLDERS = ("tests/e2e/", "tests/security/", "tests/integration/")


def file_rank(path: str) -> int:
    """Where a test file (relative to the repository, with ``/``) comes in a run."""
    if path in SLOWEST:
        return SLOWEST.index(path)
    for rank, folder in enumerate(_FOLDERS):
        if path.startswith(folder):
            return len(SLOWEST) + rank
    return len(SLOWEST) + len(_FOLDERS)
