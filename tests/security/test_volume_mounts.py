"""A user's volumes cannot be turned into a view of the host or of another user's data.

The attack: alice mounts volume ``a`` at ``/mnt/a`` and plants, inside it, a symlink
``x`` pointing at the host folder that holds model caches (as bwrap, running as
root, sees the host: ``/oldroot/...``); then an endpoint mounts ``a`` at ``/mnt/a``
and ``b`` at ``/mnt/a/x``. bwrap follows the symlink, so ``b`` covers the host's
cache folder, and ``b`` holds a symlink named like alice's cache that points at
``/oldroot/``: the model cache's bind, made next by path, would then mount the
host's ``/`` (writable) at ``/mnt/model-cache``.

Two walls, each tested: the API refuses volumes inside one another or overlapping
the model cache (422 naming ``deploy_metadata.volumes``, nothing created), and the
sandbox binds every folder a replica can write by descriptor, so even mounts an
older moorage stored nested never resolve a source path through a planted symlink.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage.runtimes import sandbox as sandboxes
from moorage.runtimes.sandbox import Sandbox, SandboxConfig
from moorage.settings import Settings
from tests.support.components import need
from tests.support.server import ApiClient

STORES = ["sqlite"]


@pytest.fixture
def sandbox_home() -> Iterator[tuple[Path, SandboxConfig]]:
    home = Path(tempfile.mkdtemp(prefix="mrg-", dir="/tmp"))
    settings = Settings(home=home, sandbox_path=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    sandbox = Sandbox.from_settings(settings)
    try:
        if sandbox.config is None:
            need("bubblewrap", sandbox.problem or "no sandbox")
        assert sandbox.config is not None
        # As root a replica drops to its owner's uid: any of the range does here.
        uid = settings.sandbox_uid_base if sandbox.config.as_root else None
        yield home, dataclasses.replace(sandbox.config, uid=uid)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run_sandboxed(
    config: SandboxConfig, home: Path, mounts: list[tuple[Path, str]], command: str
) -> tuple[int, str]:
    replica_dir = home / "replicas" / "r1"
    workdir = replica_dir / sandboxes.WORK_DIR
    sandboxes.prepare_workdir(config, workdir)
    env = sandboxes.replica_env(
        {}, port=1, replica_id="r1", endpoint_id="e1", workdir=workdir, path=config.path
    )
    listener = sandboxes.listen(sandboxes.socket_path(replica_dir))
    with listener, (replica_dir / "output").open("w+b") as output:
        process = sandboxes.spawn(
            config,
            workdir=workdir,
            command=command,
            env=env,
            listener=listener,
            output=output,
            outer_env={},
            mounts=mounts,
        )
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            raise
        output.seek(0)
        said = output.read().decode(errors="replace")
    listing = workdir / "listing"
    return code, (listing.read_text() if listing.exists() else said)


def test_a_symlink_planted_in_a_volume_never_redirects_a_later_bind(
    sandbox_home: tuple[Path, SandboxConfig],
) -> None:
    """The mounts an older moorage could have stored (nested volumes) with what a
    replica could have planted in them: the model cache must stay alice's folder."""
    home, config = sandbox_home
    volume_a = home / "volumes" / "alice" / "a"
    volume_b = home / "volumes" / "alice" / "b"
    cache_root = home / "model-cache"
    cache = cache_root / "alice"
    for folder in (volume_a, volume_b, cache):
        folder.mkdir(parents=True)
    (cache / "alices-weights").write_text("weights")
    # What alice's replicas wrote into her volumes.
    (volume_a / "x").symlink_to(f"/oldroot{cache_root}")
    (volume_b / "alice").symlink_to("/oldroot/")

    code, seen = _run_sandboxed(
        config,
        home,
        [(volume_a, "/mnt/a"), (volume_b, "/mnt/a/x"), (cache, "/mnt/model-cache")],
        "ls -a /mnt/model-cache > listing",
    )

    host_root = {"etc", "usr"} & set(seen.split())
    assert not host_root, f"the host's / was mounted in the sandbox (exit {code}): {seen[:500]}"
    if code == 0:
        assert "alices-weights" in seen.split(), seen


def test_side_by_side_volumes_and_the_cache_mount_as_themselves(
    sandbox_home: tuple[Path, SandboxConfig],
) -> None:
    home, config = sandbox_home
    volume = home / "volumes" / "alice" / "a"
    cache = home / "model-cache" / "alice"
    for folder in (volume, cache):
        folder.mkdir(parents=True)
    (volume / "in-volume").write_text("v")
    (cache / "in-cache").write_text("c")

    code, seen = _run_sandboxed(
        config,
        home,
        [(volume, "/mnt/a"), (cache, "/mnt/model-cache")],
        "ls /mnt/a /mnt/model-cache > listing",
    )

    assert code == 0, seen
    assert "in-volume" in seen, seen
    assert "in-cache" in seen, seen


def _deploy(flavor_id: str, volumes: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "name": "nested-volumes",
        "resource_metadata": {"flavor_id": flavor_id},
        "deploy_metadata": {
            "image_url": "python:3.10-slim",
            "command": "sleep 1000",
            "port": 8080,
            "volumes": volumes,
        },
    }


@pytest.mark.parametrize(
    ("volumes", "named"),
    [
        (
            [{"name": "a", "mount_path": "/mnt/a"}, {"name": "b", "mount_path": "/mnt/a/x"}],
            "'/mnt/a/x' of volume 'b' overlaps '/mnt/a' of volume 'a'",
        ),
        (
            [{"name": "b", "mount_path": "/data/a/x"}, {"name": "a", "mount_path": "/data/a"}],
            "'/data/a' of volume 'a' overlaps '/data/a/x' of volume 'b'",
        ),
        (
            [{"name": "c", "mount_path": "/mnt/model-cache/huggingface"}],
            "overlaps '/mnt/model-cache' of the model cache",
        ),
        ([{"name": "c", "mount_path": "/mnt"}], "overlaps '/mnt/model-cache' of the model cache"),
        ([{"name": "c", "mount_path": "/mnt/model-cache"}], "is '/mnt/model-cache'"),
    ],
)
def test_nested_volumes_are_refused_at_the_api_and_nothing_is_created(
    alice: ApiClient, volumes: list[dict[str, str]], named: str
) -> None:
    before = alice.call("GET", "/v1/inference-service").json()["total"]

    response = alice.call("POST", "/v1/inference-service", json=_deploy(alice.flavor_id(), volumes))

    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith("deploy_metadata.volumes"), message
    assert named in message, message
    assert "side by side" in message, "the error says what to do instead"
    assert alice.call("GET", "/v1/inference-service").json()["total"] == before
