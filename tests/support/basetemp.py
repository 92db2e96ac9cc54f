"""A short folder for a run's temporary files.

A sandboxed replica's socket lies under ``MOORAGE_HOME`` and a Unix socket's path
holds at most 107 bytes. pytest's own folders (``/tmp/pytest-of-root/pytest-368``,
plus ``popen-gw3`` per pytest-xdist worker, plus a test's name) leave too little of
that, so a run's files go to ``/tmp/mrg-<uid>/<8 characters>`` instead.

As pytest does, the folders of the last ``KEEP`` finished runs stay for a look
after a failure and older ones are removed. A run holds an flock on its folder's
``.lock`` beside it while it lives, so another run (of another checkout, at the same
time) never removes it; the lock goes with the process, however that ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

KEEP = 3
_held: list[IO[bytes]] = []  # this run's lock, open (and so held) until the process ends


def _root() -> Path:
    root = Path(tempfile.gettempdir()) / f"mrg-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    if root.is_symlink() or root.stat().st_uid != os.getuid():
        raise RuntimeError(f"{root} is not this user's own folder; remove it")
    return root


def _finished(folder: Path) -> bool:
    """Whether no live run holds ``folder``'s lock."""
    try:
        lock = (folder.parent / f"{folder.name}.lock").open("rb")
    except FileNotFoundError:
        return True
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def _remove_old(root: Path) -> None:
    runs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.is_symlink()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for folder in [p for p in runs if _finished(p)][KEEP:]:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (root / f"{folder.name}.lock").unlink()


def new_basetemp() -> Path:
    """A fresh folder for this run, locked (before it exists) until the process ends."""
    root = _root()
    descriptor, lock_path = tempfile.mkstemp(prefix="", suffix=".lock", dir=root)
    lock = os.fdopen(descriptor, "wb")
    fcntl.flock(lock, fcntl.LOCK_EX)
    _held.append(lock)
    folder = root / Path(lock_path).name.removesuffix(".lock")
    folder.mkdir(mode=0o700)
    _remove_old(root)
    return folder
