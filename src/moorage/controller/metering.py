"""Checkpointing usage in the background: every MOORAGE_METERING_INTERVAL_S, and once
at shutdown, after the controller has recorded its replicas stopped.

Nothing here holds usage in memory: each checkpoint reads the recorded events and
``billed_until`` from the store (``store/metering.py``), so a checkpoint that fails,
or a moorage killed between two, leaves nothing lost: the next one, in this process
or after a restart, closes every second not closed yet.
"""

from __future__ import annotations

import asyncio
import logging

from moorage.clock import Clock
from moorage.controller.tasks import cancel_all
from moorage.store.db import Database
from moorage.store.metering import Closed, checkpoint_usage

log = logging.getLogger(__name__)


class Metering:
    def __init__(self, db: Database, clock: Clock, interval_s: float) -> None:
        self.db = db
        self.clock = clock
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="moorage-metering")

    async def checkpoint(self) -> Closed:
        """Closes usage up to the clock's now (store work, in a thread)."""
        return await asyncio.to_thread(checkpoint_usage, self.db, self.clock.now())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.checkpoint()
            except Exception:  # one failed checkpoint is billed by the next
                log.exception("usage checkpoint failed; the next one closes its seconds")

    async def shutdown(self) -> None:
        """Stops the loop, then closes usage up to now: replicas stopped at shutdown
        are billed to their stop before moorage exits."""
        if self._task is not None:
            await cancel_all([self._task])
            self._task = None
        try:
            await self.checkpoint()
        except Exception:
            log.exception("usage checkpoint at shutdown failed; the next start closes it")
