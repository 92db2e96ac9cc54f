"""Standalone gateways' demand reports, stored for the autoscaler.

A report with requests waiting (held while a replica starts) wakes the autoscaler
where it runs in this process, so a request held at a standalone gateway starts a
replica as soon as one held at ``moorage serve``'s own port would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from moorage.clock import Clock
from moorage.models.demand import REPORT_FRESH_FOR, EndpointDemand
from moorage.store.db import Database
from moorage.store.demand import DemandRepository


class DemandService:
    def __init__(
        self, db: Database, clock: Clock, on_waiting: Callable[[], None] = lambda: None
    ) -> None:
        self.db = db
        self.clock = clock
        self.on_waiting = on_waiting

    def report(self, gateway_id: str, endpoints: Mapping[str, EndpointDemand]) -> None:
        now = self.clock.now()
        with self.db.session() as session:
            DemandRepository(session).replace_report(
                gateway_id, endpoints, now, stale_before=now - REPORT_FRESH_FOR
            )
        if any(seen.waiting for seen in endpoints.values()):
            self.on_waiting()
