"""Which replica holds which GPU, for ``/metrics``: read from the store at most
once every ``max_age_s``, so Prometheus scraping often costs the store little."""

from __future__ import annotations

import time
from collections.abc import Callable

from moorage.inventory.gpu_metrics import Allocations
from moorage.services.cached import Cached
from moorage.store.db import Database
from moorage.store.flavors import FlavorRepository
from moorage.store.gpu_holders import GpuHolderRepository

__all__ = ["GpuAllocationView"]


class GpuAllocationView:
    def __init__(
        self,
        db: Database,
        *,
        max_age_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self._cached = Cached(self._read, Allocations(), max_age_s=max_age_s, monotonic=monotonic)

    def current(self) -> Allocations:
        """Every live flavor's GPUs and their holders, as of at most ``max_age_s`` ago."""
        return self._cached.current()

    def _read(self) -> Allocations:
        with self.db.session() as session:
            flavors = FlavorRepository(session).list_live()
            holders = GpuHolderRepository(session).holders()
        gpus = sorted(gpu for stored in flavors for gpu in stored.flavor.gpus)
        return Allocations(tuple(gpus), holders)
