"""A sandboxed replica on the process runtime is handed its own GPUs' device files and
no other GPU's, with their UUIDs in ``CUDA_VISIBLE_DEVICES``.

No GPU here: two character devices made like ``/dev/null`` (1, 3) stand in for
``/dev/nvidia6`` and ``/dev/nvidia7``, mapped to two UUIDs as discovery maps a real
GPU's minor number. The replica is given one; it lists its ``/dev``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from moorage.models.endpoints import DeploySpec
from moorage.runtimes.base import Launch
from moorage.runtimes.process import ProcessRuntime
from moorage.runtimes.sandbox import Sandbox
from moorage.settings import Settings
from moorage.wire import new_id
from tests.support.components import need
from tests.support.server import wait_for

pytestmark = pytest.mark.anyio

GIVEN = "GPU-given-7"
OTHER = "GPU-other-6"


@pytest.fixture
async def runtime() -> AsyncIterator[tuple[ProcessRuntime, Path]]:
    if os.geteuid() != 0:
        pytest.skip("making device files needs root")
    home = Path(tempfile.mkdtemp(prefix="mrg-", dir="/tmp"))
    devices = home / "devices"
    devices.mkdir()
    for name in ("nvidia6", "nvidia7"):
        os.mknod(devices / name, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    settings = Settings(home=home, sandbox_path=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    settings.replicas_dir.mkdir()
    sandbox = await asyncio.to_thread(Sandbox.from_settings, settings)
    if sandbox.config is None:
        shutil.rmtree(home)
        need("bubblewrap", sandbox.problem or "no sandbox")
    process_runtime = ProcessRuntime(
        settings.replicas_dir,
        sandbox=sandbox,
        owner_uids=lambda _user: settings.sandbox_uid_base,
        gpu_devices={GIVEN: devices / "nvidia7", OTHER: devices / "nvidia6"},
    )
    try:
        yield process_runtime, settings.replicas_dir
    finally:
        for replica in settings.replicas_dir.iterdir():
            await process_runtime.stop(replica.name)
        await process_runtime.close()
        shutil.rmtree(home, ignore_errors=True)


async def test_a_sandboxed_replica_sees_its_own_gpus_device_file_only(
    runtime: tuple[ProcessRuntime, Path],
) -> None:
    process_runtime, replicas = runtime
    launch = Launch(
        replica_id=new_id(),
        endpoint_id=new_id(),
        revision=1,
        deploy=DeploySpec(
            image_url="local",
            command='ls /dev > devices; echo "$CUDA_VISIBLE_DEVICES" > visible; exec sleep 60',
            port=8080,
            gpu_num=1,
        ),
        sandboxed=True,
        gpus=(GIVEN,),
        user_id="alice",
    )

    await process_runtime.start(launch)

    work = replicas / launch.replica_id / "work"
    visible = wait_for(lambda: (work / "visible").exists() and (work / "visible").read_text())
    assert visible.strip() == GIVEN
    listed = (work / "devices").read_text().split()
    assert "nvidia7" in listed, listed
    assert "nvidia6" not in listed, "another GPU's device file is in the sandbox"
