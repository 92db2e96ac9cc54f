"""What a replica's actor checks on its Ray node before it starts anything: that the
node runs Ray as the same kind of user as moorage's host (or the sandbox, set up
there, would not drop a replica to its owner's uid), and that the node's replicas
folder is the node user's alone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.models.endpoints import DeploySpec
from moorage.runtimes.base import Launch, StartError
from moorage.runtimes.ray_host import HostOptions, ReplicaHost
from moorage.runtimes.sandbox import Sandbox
from moorage.runtimes.sandbox_config import SandboxConfig


@pytest.fixture(autouse=True)
def umask_kept() -> Iterator[None]:
    """The actor sets its worker's umask; the test process keeps its own."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


def _host(root: Path, *, setpriv: str | None) -> ReplicaHost:
    config = SandboxConfig(
        bwrap="bwrap", home=root, path="/usr/bin", python="python3", setpriv=setpriv
    )
    return ReplicaHost(
        HostOptions(replicas_dir=str(root / "replicas"), sandbox=Sandbox(config=config))
    )


def _launch(*, sandboxed: bool) -> Launch:
    return Launch(
        "r1", "e1", 1, DeploySpec(image_url="x", command="true", port=8080), sandboxed=sandboxed
    )


def test_a_node_of_another_kind_of_user_than_moorages_host_refuses_sandboxed_replicas(
    tmp_path: Path,
) -> None:
    node_is_root = os.geteuid() == 0
    # moorage's host set the sandbox up as the other kind of user than this "node".
    host = _host(tmp_path, setpriv=None if node_is_root else "/usr/bin/setpriv")
    with pytest.raises(StartError, match="same kind of user"):
        host._check_privilege(_launch(sandboxed=True))
    host._check_privilege(_launch(sandboxed=False))  # the admin's: no sandbox to drop from


def test_a_node_of_the_same_kind_starts_them(tmp_path: Path) -> None:
    host = _host(tmp_path, setpriv="/usr/bin/setpriv" if os.geteuid() == 0 else None)
    host._check_privilege(_launch(sandboxed=True))


def test_the_replicas_folder_is_made_or_tightened_to_0700(tmp_path: Path) -> None:
    folder = tmp_path / "replicas"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    root = _host(tmp_path, setpriv=None)._private_root()
    assert root == folder
    assert folder.stat().st_mode & 0o777 == 0o700
    made = tmp_path / "made.txt"
    made.write_text("x")
    assert made.stat().st_mode & 0o077 == 0  # the worker's umask is 077 from then on


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user takes root")
def test_a_replicas_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "replicas"
    folder.mkdir()
    os.chown(folder, 12345, 12345)
    with pytest.raises(StartError, match="belongs to uid 12345"):
        _host(tmp_path, setpriv=None)._private_root()
