"""A sandboxed replica on the process runtime is handed its own GPUs' device files and
no other GPU's, with their UUIDs in ``CUDA_VISIBLE_DEVICES``.

No GPU here: two character devices made like ``/dev/null`` (1, 3) stand in for
``/dev/nvidia6`` and ``/dev/nvidia7``, mapped to two UUIDs as discovery maps a real
GPU's minor number. The replica is given one; it lists its ``/dev``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from moorage.models.endpoints import DeploySpec
from moorage.runtimes.base import Launch
from moorage.runtimes.process import ProcessRuntime
from moorage.wire import new_id
from tests.support.sandboxed import sandboxed_runtime
from tests.support.server import wait_for

pytestmark = pytest.mark.anyio

GIVEN = "GPU-given-7"
OTHER = "GPU-other-6"


def _stand_in_devices(home: Path) -> dict[str, Any]:
    devices = home / "devices"
    devices.mkdir()
    for name in ("nvidia6", "nvidia7"):
        os.mknod(devices / name, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return {"gpu_devices": {GIVEN: devices / "nvidia7", OTHER: devices / "nvidia6"}}


@pytest.fixture
async def runtime() -> AsyncIterator[tuple[ProcessRuntime, Path]]:
    if os.geteuid() != 0:
        pytest.skip("making device files needs root")
    async with sandboxed_runtime(_stand_in_devices) as (process_runtime, home):
        yield process_runtime, home / "replicas"


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
