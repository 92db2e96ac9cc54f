"""The model cache's folders as moorage makes them before a replica starts: the ones
the Hugging Face variables name, and nothing outside the cache whatever a replica
left in it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from moorage.runtimes import model_cache


def test_the_folders_the_variables_name_are_made_0700(tmp_path: Path) -> None:
    cache = model_cache.prepare(tmp_path / "cache", "alice", uid=None)

    hub = cache / "huggingface" / "hub"
    assert hub.is_dir()
    assert stat.S_IMODE(hub.stat().st_mode) == 0o700
    env = model_cache.environment(model_cache.MOUNT_PATH)
    assert env["HUGGINGFACE_HUB_CACHE"] == f"{model_cache.MOUNT_PATH}/huggingface/hub"


def test_a_link_a_replica_left_in_the_cache_sends_nothing_elsewhere(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache = model_cache.prepare(tmp_path / "cache", "alice", uid=None)
    (cache / "huggingface" / "hub").rmdir()
    (cache / "huggingface").rmdir()
    (cache / "huggingface").symlink_to(elsewhere)

    model_cache.prepare(tmp_path / "cache", "alice", uid=None)

    assert list(elsewhere.iterdir()) == []
    assert (cache / "huggingface").is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="handing folders to another uid needs root")
def test_made_folders_are_the_owners_uid(tmp_path: Path) -> None:
    cache = model_cache.prepare(tmp_path / "cache", "alice", uid=2_000_000_123)

    for folder in (cache, cache / "huggingface", cache / "huggingface" / "hub"):
        assert folder.stat().st_uid == 2_000_000_123, folder
