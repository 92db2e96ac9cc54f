"""This host's GPUs as ``Gpu`` values, from NVML: what ``moorage serve`` offers
unless the flavors file hides them (``models/gpu_flavors.py`` merges the two)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from moorage.inventory.nvml import NvmlReader, NvmlUnavailable
from moorage.models.gpus import LOCAL_NODE, Gpu

__all__ = ["Discovery", "discover"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Discovery:
    gpus: tuple[Gpu, ...] = ()
    driver_version: str | None = None
    cuda_version: str | None = None
    # Why no GPU was found (no driver), for the start-up log; None when NVML answered.
    problem: str | None = None
    # Each GPU's device file, by UUID (/dev/nvidiaN), for runtimes that hand a replica
    # its GPUs as files (the process runtime's sandbox); only GPUs whose file is there.
    devices: Mapping[str, Path] = field(default_factory=dict)


def discover(
    reader: NvmlReader, node: str = LOCAL_NODE, device_dir: Path = Path("/dev")
) -> Discovery:
    """Every GPU NVML reports on this host; none (with the reason) without a driver."""
    try:
        report = reader.read()
    except NvmlUnavailable as exc:
        log.debug("no NVIDIA GPU found through NVML: %s", exc)
        return Discovery(problem=str(exc))
    gpus = tuple(Gpu(node, d.index, d.uuid, d.name, d.memory_mib) for d in report.devices)
    files = {d.uuid: device_dir / f"nvidia{d.minor_number}" for d in report.devices}
    devices = {
        d.uuid: files[d.uuid]
        for d in report.devices
        if d.minor_number is not None and files[d.uuid].exists()
    }
    return Discovery(gpus, report.driver_version, report.cuda_version, devices=devices)
