"""The flavors served: the operator's list merged with the GPUs NVML found.

Discovered GPUs of a model join the flavor whose ``gpu_model`` names it (the
operator's price and name win); a model no flavor names becomes a flavor of its
own, named as the reference names GPU flavors (``NVIDIA_H100_80GB_HBM3``),
free until priced. GPUs in ``hidden`` are never offered. Every GPU flavor's
``capacity`` is its number of GPUs and its ``node_max_gpu`` the most one node
holds (or less, where the operator set less).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from moorage.models.flavors import Flavor, stable_flavor_id
from moorage.models.gpus import Gpu, GpuModel, group_by_model

__all__ = ["DISCOVERED_CLUSTER", "merge_gpu_flavors"]

# The cluster_id of flavors made from discovered GPUs.
DISCOVERED_CLUSTER = "local"


def merge_gpu_flavors(
    flavors: Sequence[Flavor],
    discovered: Sequence[Gpu],
    *,
    cuda: str | None = None,
    driver: str | None = None,
    hidden: AbstractSet[str] = frozenset(),
) -> list[Flavor]:
    """The operator's flavors, in order, then one per unclaimed discovered model."""
    declared = {g.uuid for f in flavors for g in f.gpus}
    found = [g for g in discovered if g.uuid not in hidden and g.uuid not in declared]
    claimed = {f.gpu_model for f in flavors if f.gpu_model}
    merged = []
    for flavor in flavors:
        joining = [g for g in found if flavor.gpu_model and g.model == flavor.gpu_model]
        gpus = tuple(sorted(g for g in (*flavor.gpus, *joining) if g.uuid not in hidden))
        merged.append(_with_gpus(flavor, gpus, cuda) if (gpus or flavor.gpu_model) else flavor)
    for model in group_by_model([g for g in found if g.model not in claimed], cuda):
        merged.append(_discovered_flavor(model, driver))
    return merged


def _with_gpus(flavor: Flavor, gpus: tuple[Gpu, ...], cuda: str | None) -> Flavor:
    group = GpuModel(flavor.gpu_model or flavor.display_name, gpus, cuda)
    per_node = group.node_max_gpu()
    meta_info = dict(flavor.meta_info)
    if cuda and "cuda" not in meta_info:
        meta_info["cuda"] = cuda
    return dataclasses.replace(
        flavor,
        gpus=gpus,
        capacity=len(gpus),
        node_max_gpu=min(flavor.node_max_gpu, per_node) if flavor.node_max_gpu else per_node,
        vram=flavor.vram or group.vram,
        meta_info=meta_info,
    )


def _discovered_flavor(model: GpuModel, driver: str | None) -> Flavor:
    name = model.display_name
    key = f"local_{name}"  # the id earlier versions gave a detected model, kept
    meta_info = {"region": "local"}
    if model.cuda:
        meta_info["cuda"] = model.cuda
    if driver:
        meta_info["driver"] = driver
    return Flavor(
        flavor_id=stable_flavor_id(DISCOVERED_CLUSTER, key, "local"),
        display_name=name,
        cluster_id=DISCOVERED_CLUSTER,
        cluster_flavor_id=key,
        capacity=len(model.gpus),
        node_max_gpu=model.node_max_gpu(),
        meta_info=meta_info,
        vram=model.vram,
        gpus=model.gpus,
        gpu_model=model.model,
    )
