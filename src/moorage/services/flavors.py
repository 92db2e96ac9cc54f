"""Flavors with live availability."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from moorage.clock import Clock
from moorage.inventory.discovery import discover
from moorage.inventory.nvml import Nvml, NvmlReader
from moorage.models.builtin_flavors import builtin_flavors
from moorage.models.flavor_file import load_flavor_file, load_hidden_gpus
from moorage.models.flavors import Flavor, StoredFlavor
from moorage.models.gpu_flavors import merge_gpu_flavors
from moorage.settings import Settings
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.flavors import FlavorRepository
from moorage.store.gpus import GpuAllocationRepository

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlavorAvailability:
    stored: StoredFlavor
    available_num: int


def configured_flavors(settings: Settings, nvml: NvmlReader | None = None) -> list[Flavor]:
    """The operator's file when there is one (an explicit MOORAGE_FLAVORS must exist),
    else the built-in set; either merged with the GPUs NVML finds on this host
    (``nvml`` stands in for the driver in tests), less the file's ``hidden_gpus``."""
    path = settings.flavors_file
    hidden: frozenset[str] = frozenset()
    if settings.flavors is not None or path.exists():
        flavors = load_flavor_file(path)
        hidden = load_hidden_gpus(path)
    else:
        flavors = builtin_flavors()
    found = discover(nvml or Nvml())
    return merge_gpu_flavors(
        flavors,
        found.gpus,
        cuda=found.cuda_version,
        driver=found.driver_version,
        hidden=hidden,
    )


class FlavorService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def sync(self, flavors: Sequence[Flavor]) -> None:
        with self.db.session() as session:
            FlavorRepository(session).sync(flavors, self.clock.now())
        for flavor in flavors:
            log.info("%s", flavor.offer())

    def list(self) -> list[FlavorAvailability]:
        """Every live flavor with ``available_num``: for a GPU flavor the GPUs a new
        replica could still be given (free, less those waiting replicas will take);
        for any other, replica slots (capacity less what running endpoints hold)."""
        with self.db.session() as session:
            endpoints = EndpointRepository(session)
            gpus = GpuAllocationRepository(session)
            return [
                FlavorAvailability(
                    s,
                    gpus.usage(s.flavor).available
                    if s.flavor.has_gpus
                    else max(0, s.flavor.capacity - endpoints.held_instances(s.flavor.flavor_id)),
                )
                for s in FlavorRepository(session).list_live()
            ]
