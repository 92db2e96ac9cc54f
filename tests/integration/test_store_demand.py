"""Standalone gateways' demand reports in the store (SQLite and PostgreSQL): each
report replaces the gateway's last, stale reports stop counting, and the autoscaler
sums every fresh one."""

from __future__ import annotations

from datetime import timedelta

from moorage.clock import FakeClock
from moorage.models.demand import REPORT_FRESH_FOR, Demand, EndpointDemand
from moorage.services.demand import DemandService
from moorage.store.db import Database
from moorage.store.demand import DemandRepository


def _fresh(db: Database, clock: FakeClock) -> list[dict[str, EndpointDemand]]:
    with db.session() as session:
        return DemandRepository(session).reports_since(clock.now() - REPORT_FRESH_FOR)


def test_reports_replace_each_other_and_stale_ones_stop_counting(db: Database) -> None:
    clock = FakeClock()
    woken: list[int] = []
    service = DemandService(db, clock, on_waiting=lambda: woken.append(1))
    service.report("gw-a:1", {"ep1": EndpointDemand(2, 0, 10), "ep2": EndpointDemand(1, 0, 3)})
    service.report("gw-b:7", {"ep1": EndpointDemand(1, 0, 4)})
    assert not woken, "nothing waits: no reason to wake the autoscaler"

    service.report("gw-a:1", {"ep1": EndpointDemand(0, 3, 12)})  # ep2 gone from gw-a
    assert woken, "held requests wake the autoscaler at once"
    total = Demand({"ep1": EndpointDemand(1, arrived=5, busy_s=2.5)}).plus(_fresh(db, clock))
    assert total.of("ep1") == EndpointDemand(in_flight=2, waiting=3, arrived=21, busy_s=2.5)
    assert total.of("ep2") == EndpointDemand(), "a report replaces the gateway's last"

    clock.advance(REPORT_FRESH_FOR.total_seconds() + 1)
    service.report("gw-a:1", {"ep1": EndpointDemand(1, 0, 13)})
    assert Demand().plus(_fresh(db, clock)).of("ep1") == EndpointDemand(1, 0, 13), (
        "gw-b stopped reporting: its last report no longer counts"
    )
    clock.advance(timedelta(seconds=1).total_seconds())
    assert len(_fresh(db, clock)) == 1
