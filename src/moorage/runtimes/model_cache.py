"""The model cache: one folder per node and user, mounted in every replica of that user.

Model servers download tens of GB of weights; with the cache, one replica's
download serves every later replica of the same user on the node. Each user has
a folder of their own, ``$MOORAGE_MODEL_CACHE/<user_id>`` (0700, owned by the
uid sandboxed replicas run as), mounted read-write at ``MOUNT_PATH``; the
Hugging Face variables point into it, so ``transformers``, vLLM and TGI use it
without being told. Another user's replicas mount their own folder, never this
one. moorage never empties it (docs/runtimes.md says how an operator does).
"""

from __future__ import annotations

import os
from pathlib import Path

from moorage.models.endpoints import MODEL_CACHE_PATH
from moorage.runtimes.private_dirs import owned_dir

# Inside the sandbox only folders under a tmpfs (or the host's own) can be mount
# points; /mnt is one, in a container any path is. No volume may overlap it.
MOUNT_PATH = MODEL_CACHE_PATH


def environment(path: str) -> dict[str, str]:
    """Where the Hugging Face libraries (and the servers built on them) look for and
    keep models: defaults an endpoint's ``env`` may change."""
    hub = f"{path}/huggingface/hub"
    return {
        "HF_HOME": f"{path}/huggingface",
        "HUGGINGFACE_HUB_CACHE": hub,
        "TRANSFORMERS_CACHE": hub,
    }


VARIABLES = tuple(environment(MOUNT_PATH))


def prepare(root: Path, user_id: str, *, uid: int | None) -> Path:
    """The user's cache folder, created on first use: 0700, owned by ``uid`` (the
    sandbox's, when moorage runs as root) so the replica can write it and no other
    user can read it. ``root`` stays moorage's own (0700)."""
    if not user_id or "/" in user_id or user_id in (".", ".."):
        raise OSError(f"no model cache for owner {user_id!r}")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache = owned_dir(root / user_id, uid=uid)
    _make_inside(cache, SUBFOLDERS, uid=uid)
    return cache


# The folders the variables name, relative to the cache: there before the replica
# starts, as HF_HOME is on a machine where the libraries ran once.
SUBFOLDERS = ("huggingface", "hub")


def _make_inside(folder: Path, names: tuple[str, ...], *, uid: int | None) -> None:
    """Makes the chain ``folder/names[0]/names[1]/...`` where missing, handing what it
    makes to ``uid``. The cache is the replica's to write, so each step is taken
    relative to an open descriptor without following a symlink: a link the replica
    put in place of a folder ends the chain there, never sends moorage (root)
    elsewhere on the host."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    parent = os.open(folder, flags)
    try:
        for name in names:
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
                made = True
            except FileExistsError:
                made = False
            try:
                child = os.open(name, flags, dir_fd=parent)
            except OSError:
                return  # a link or a file the replica made: its own choice
            os.close(parent)
            parent = child
            if made and uid is not None:
                os.fchown(parent, uid, uid)
    finally:
        os.close(parent)
