"""This host's GPUs as ``Gpu`` values, from NVML: what ``moorage serve`` offers
unless the flavors file hides them (``models/gpu_flavors.py`` merges the two)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

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


def discover(reader: NvmlReader, node: str = LOCAL_NODE) -> Discovery:
    """Every GPU NVML reports on this host; none (with the reason) without a driver."""
    try:
        report = reader.read()
    except NvmlUnavailable as exc:
        log.debug("no NVIDIA GPU found through NVML: %s", exc)
        return Discovery(problem=str(exc))
    gpus = tuple(Gpu(node, d.index, d.uuid, d.name, d.memory_mib) for d in report.devices)
    return Discovery(gpus, report.driver_version, report.cuda_version)
