"""``GET /v1/inference-service/{id}/traffic``: an endpoint's request counters for its
owner's charts.

The numbers are the ones gateways already keep for the autoscaler
(``models/demand.py``): ``moorage serve``'s own gateway, read in this process, plus
the fresh reports of standalone gateways from the store. Counters are cumulative
since each gateway started, so a chart takes differences between two readings (and
a gateway's restart shows as a drop). The in-process gateway is read on the event
loop it runs on; the store in one of the API's worker threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import anyio

from moorage import refusals
from moorage.clock import Clock
from moorage.models.accounts import User
from moorage.models.demand import REPORT_FRESH_FOR, Demand, EndpointDemand
from moorage.store.db import Database
from moorage.store.demand import DemandRepository
from moorage.store.endpoints import EndpointRepository


@dataclass(frozen=True)
class Traffic:
    """One endpoint's counters summed over every gateway, read at ``at``."""

    service_id: str
    at: datetime
    seen: EndpointDemand


class TrafficService:
    def __init__(self, db: Database, clock: Clock, local: Callable[[], Demand]) -> None:
        self.db = db
        self.clock = clock
        # This process's gateway: never imported here (services sit below it), passed in.
        self.local = local

    async def of(self, user: User, service_id: str) -> Traffic:
        """The user's endpoint's traffic now; must run on the gateway's event loop."""
        at = self.clock.now()
        reports = await anyio.to_thread.run_sync(self._reported, user, service_id, at)
        seen = self.local().plus({service_id: report} for report in reports).of(service_id)
        return Traffic(service_id, at, seen)

    def _reported(self, user: User, service_id: str, at: datetime) -> list[EndpointDemand]:
        with self.db.session() as session:
            endpoint = EndpointRepository(session).get_live(service_id)
            # Another user's endpoint answers exactly like a missing one, after the same
            # single lookup (as every endpoint route does).
            if endpoint is None or endpoint.user_id != user.user_id:
                raise refusals.endpoint_not_found(service_id)
            return DemandRepository(session).reports_of(service_id, at - REPORT_FRESH_FOR)
