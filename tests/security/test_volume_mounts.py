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

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from moorage.models.endpoints import DeploySpec, Volume
from moorage.runtimes import model_cache, volumes
from moorage.runtimes.base import Launch
from moorage.runtimes.process import ProcessRuntime
from moorage.wire import new_id
from tests.support.sandboxed import sandboxed_runtime
from tests.support.server import ApiClient

STORES = ["sqlite"]


@pytest.fixture
async def runtime() -> AsyncIterator[tuple[ProcessRuntime, Path]]:
    """The process runtime with its sandbox, volumes and model cache."""

    def folders(home: Path) -> dict[str, Any]:
        return {"volumes_root": home / "volumes", "model_cache_root": home / "model-cache"}

    async with sandboxed_runtime(folders) as made:
        yield made


async def _listing(process_runtime: ProcessRuntime, volumes: list[Volume], command: str) -> str:
    """What alice's replica with these volumes wrote to ``listing`` in its work folder,
    or its output if it wrote nothing (bwrap refused to start it)."""
    launch = Launch(
        replica_id=new_id(),
        endpoint_id=new_id(),
        revision=1,
        deploy=DeploySpec(
            image_url="local",
            command=f"{command} > listing; exec sleep 60",
            port=8080,
            volumes=tuple(volumes),
        ),
        sandboxed=True,
        user_id="alice",
    )
    await process_runtime.start(launch)
    replica = process_runtime.root / launch.replica_id
    listing = replica / "work" / "listing"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        if listing.exists() and listing.stat().st_size:
            return listing.read_text()
        state = (await process_runtime.observe()).get(launch.replica_id)
        if state is not None and not state.running:
            return (replica / "output.log").read_text(errors="replace") or "(exited)"
        if loop.time() > deadline:
            raise AssertionError("the replica wrote no listing in 30 s")
        await asyncio.sleep(0.2)


@pytest.mark.anyio
async def test_a_symlink_planted_in_a_volume_never_redirects_a_later_bind(
    runtime: tuple[ProcessRuntime, Path],
) -> None:
    """Nested volumes (what an older moorage could have stored) holding what alice's
    replicas could have planted in them: the model cache must stay alice's folder."""
    process_runtime, home = runtime
    outer, inner = Volume("a", "/mnt/a"), Volume("b", "/mnt/a/x")
    cache_root = home / "model-cache"
    for volume in (outer, inner):
        volumes.prepare_host_dir(home / "volumes", "alice", volume, uid=None)
    cache = model_cache.prepare(cache_root, "alice", uid=None)
    (cache / "alices-weights").write_text("weights")
    # What alice's replicas wrote into her volumes.
    (volumes.host_dir(home / "volumes", "alice", outer) / "x").symlink_to(f"/oldroot{cache_root}")
    (volumes.host_dir(home / "volumes", "alice", inner) / "alice").symlink_to("/oldroot/")

    seen = await _listing(process_runtime, [outer, inner], "ls -a /mnt/model-cache")

    host_root = {"etc", "usr"} & set(seen.split())
    assert not host_root, f"the host's / was mounted in the sandbox: {seen[:500]}"


@pytest.mark.anyio
async def test_side_by_side_volumes_and_the_cache_mount_as_themselves(
    runtime: tuple[ProcessRuntime, Path],
) -> None:
    process_runtime, home = runtime
    volume = Volume("a", "/mnt/a")
    folder = volumes.prepare_host_dir(home / "volumes", "alice", volume, uid=None)
    (folder / "in-volume").write_text("v")
    cache = model_cache.prepare(home / "model-cache", "alice", uid=None)
    (cache / "in-cache").write_text("c")

    seen = await _listing(process_runtime, [volume], "ls /mnt/a /mnt/model-cache")

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
