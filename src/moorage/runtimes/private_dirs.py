"""Folders on the host that belong to one replica owner: made 0700 and handed to the
uid sandboxed replicas run as, so the replica can write them and nobody else can read.

Shared by the model cache and the volumes, which differ only in where the folder is.
"""

from __future__ import annotations

import os
from pathlib import Path


def owned_dir(path: Path, *, uid: int | None) -> Path:
    """``path`` created if missing (0700), refused when something other than a real
    folder is there (a symlink could point anywhere), and owned by ``uid`` when given."""
    path.mkdir(mode=0o700, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise OSError(f"{path} is not a directory")
    if uid is not None and path.stat().st_uid != uid:
        os.chown(path, uid, uid)
    return path
