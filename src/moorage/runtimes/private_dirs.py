"""Folders on the host that belong to one replica owner: made 0700 and handed to the
uid that owner's sandboxed replicas run as, so the replica can write them and nobody
else can read.

Shared by the model cache, the volumes and replicas' work folders, which differ only
in where the folder is. A folder an older moorage made belongs to the one uid it ran
every owner as (65534): it is handed over, contents and all, on first use.
"""

from __future__ import annotations

import os
from pathlib import Path


def owned_dir(path: Path, *, uid: int | None) -> Path:
    """``path`` created if missing (0700), refused when something other than a real
    folder is there (a symlink could point anywhere), and, when ``uid`` is given, owned
    by it (uid and gid) with everything in it."""
    path.mkdir(mode=0o700, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise OSError(f"{path} is not a directory")
    if uid is not None:
        info = path.lstat()
        if (info.st_uid, info.st_gid) != (uid, uid):
            hand_over(path, uid)
    return path


def hand_over(path: Path, uid: int) -> None:
    """Gives ``path`` and everything under it to ``uid`` (and gid ``uid``). A symlink
    is changed itself, never followed (``lchown``, and the walk does not enter linked
    folders), so a link a replica planted cannot hand over a file elsewhere. ``path``
    itself goes last: a handover cut short is done again at the next use, which finds
    the folder still not ``uid``'s. Raises OSError for what cannot be changed."""

    def fail(error: OSError) -> None:
        raise error

    for folder, dirs, files in os.walk(path, followlinks=False, onerror=fail):
        for name in (*dirs, *files):
            os.lchown(os.path.join(folder, name), uid, uid)
    os.lchown(path, uid, uid)
