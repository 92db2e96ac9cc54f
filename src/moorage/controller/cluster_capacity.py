"""Keeps flavors' capacity at what the cluster's live nodes offer.

On a cluster runtime (``ReportsCapacity``: Ray) the operator sizes flavors by
starting nodes with resources, not by editing the flavors file, and a node that
dies takes its share with it. Every few seconds the controller reads the cluster's
totals and writes each flavor's capacity, so ``available_num``, quotas' shares and
the dashboard follow the cluster. A flavor the cluster offers none of keeps its
capacity at 0: its replicas wait for a node, and ``status_info`` says which
resource they wait for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from moorage.clock import Clock
from moorage.runtimes.base import ReportsCapacity, Runtime
from moorage.store.db import Database
from moorage.store.flavors import FlavorRepository

log = logging.getLogger(__name__)

SYNC_EVERY = timedelta(seconds=5)


class CapacitySync:
    def __init__(self, db: Database, runtime: Runtime, clock: Clock) -> None:
        self.db = db
        self.runtime = runtime if isinstance(runtime, ReportsCapacity) else None
        self.clock = clock
        self._next: datetime | None = None

    async def maybe(self) -> None:
        """Syncs when due; a runtime without a cluster has nothing to sync."""
        if self.runtime is None:
            return
        now = self.clock.now()
        if self._next is not None and now < self._next:
            return
        self._next = now + SYNC_EVERY
        offered = await self.runtime.capacity()
        await asyncio.to_thread(self._write, offered, now)

    def _write(self, offered: Mapping[str, int], now: datetime) -> None:
        with self.db.session() as session:
            repository = FlavorRepository(session)
            keys = {s.flavor.cluster_flavor_id for s in repository.list_live()}
            changed = repository.set_capacities({k: offered.get(k, 0) for k in keys}, now)
        for flavor in changed:
            log.info(
                "flavor %s: the cluster's live nodes offer %s replica slots",
                flavor.display_name,
                flavor.capacity,
            )
