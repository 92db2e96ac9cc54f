"""GPUs as moorage sells them: one ``Gpu`` per device, grouped into flavors by model.

A GPU flavor is the set of GPUs of one model the operator offers; its replicas
are given whole GPUs of that set, by UUID (``models/placement.py`` picks them).
GPUs come from NVML on this host (``inventory/``) or are declared in the flavors
file for hosts NVML cannot see; ``gpu_flavors`` merges the two. Pure: the
same GPUs and file always give the same flavors.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["LOCAL_NODE", "Gpu", "GpuModel", "flavor_name", "group_by_model", "vram_label"]

# The node name of GPUs on the host moorage runs on.
LOCAL_NODE = "local"


@dataclass(frozen=True, order=True)
class Gpu:
    """One GPU a replica can be given whole. ``uuid`` is what runtimes pass on
    (``CUDA_VISIBLE_DEVICES``, docker ``device_ids``): it names the same device
    whatever order a driver enumerates them in."""

    node: str
    index: int
    uuid: str
    model: str = ""
    memory_mib: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "uuid": self.uuid,
            "index": self.index,
            "node": self.node,
            "model": self.model,
            "memory_mib": self.memory_mib,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Gpu:
        return cls(
            node=str(data.get("node", LOCAL_NODE)),
            index=int(str(data.get("index", 0))),
            uuid=str(data["uuid"]),
            model=str(data.get("model", "")),
            memory_mib=int(str(data.get("memory_mib", 0))),
        )


@dataclass(frozen=True)
class GpuModel:
    """The discovered GPUs of one model, with what a flavor shows of them."""

    model: str
    gpus: tuple[Gpu, ...]
    cuda: str | None = None

    @property
    def display_name(self) -> str:
        return flavor_name(self.model)

    @property
    def vram(self) -> str | None:
        """The smallest memory among those GPUs whose memory is known (NVML's, or a
        declared ``memory_mib``; 0 is unknown), or None when none is: a declared GPU
        without ``memory_mib`` must not make the flavor's VRAM ``0GB``."""
        known = [g.memory_mib for g in self.gpus if g.memory_mib > 0]
        return vram_label(min(known)) if known else None

    def node_max_gpu(self) -> int:
        return max(Counter(g.node for g in self.gpus).values(), default=0)


def flavor_name(model: str) -> str:
    """NVML's model name as the reference spells flavors: ``NVIDIA H100 80GB HBM3``
    becomes ``NVIDIA_H100_80GB_HBM3``."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", model.strip()).strip("_") or "GPU"


def vram_label(memory_mib: int) -> str:
    """Memory as the reference's ``VRAM`` shows it (``80GB``): whole GiB, rounded,
    since NVML reports a little less than the card's nominal size."""
    return f"{round(memory_mib / 1024)}GB"


def group_by_model(gpus: Sequence[Gpu], cuda: str | None = None) -> list[GpuModel]:
    """Discovered GPUs by model, in the order their first GPU was found."""
    by_model: dict[str, list[Gpu]] = {}
    for gpu in gpus:
        by_model.setdefault(gpu.model, []).append(gpu)
    return [GpuModel(model, tuple(sorted(found)), cuda) for model, found in by_model.items()]
