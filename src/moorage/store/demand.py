"""Standalone gateways' reports of their demand (``models/demand.py``).

Each report replaces that gateway's rows whole, so an endpoint it no longer sees
leaves no stale row behind; rows older than the freshness a reader asks for are
ignored, and removed at the next report, so a gateway that went away stops
counting within seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from moorage.models.demand import EndpointDemand
from moorage.store.tables import GatewayDemandRow


class DemandRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def replace_report(
        self,
        gateway_id: str,
        endpoints: Mapping[str, EndpointDemand],
        at: datetime,
        *,
        stale_before: datetime,
    ) -> None:
        """Stores what ``gateway_id`` sees now, and forgets every gateway's rows
        reported before ``stale_before``."""
        self.session.execute(
            delete(GatewayDemandRow).where(
                (GatewayDemandRow.gateway_id == gateway_id)
                | (GatewayDemandRow.reported_at < stale_before)
            )
        )
        self.session.add_all(
            GatewayDemandRow(
                gateway_id=gateway_id,
                service_id=service_id,
                in_flight=seen.in_flight,
                waiting=seen.waiting,
                arrived=seen.arrived,
                held=seen.held,
                busy_s=seen.busy_s,
                waited_s=seen.waited_s,
                answered=seen.answered,
                errors=seen.errors,
                latency_s=seen.latency_s,
                reported_at=at,
            )
            for service_id, seen in endpoints.items()
        )
        self.session.flush()

    def reports_since(self, since: datetime) -> list[dict[str, EndpointDemand]]:
        """Each gateway's latest report made at or after ``since``."""
        rows = self.session.scalars(
            select(GatewayDemandRow).where(GatewayDemandRow.reported_at >= since)
        )
        by_gateway: dict[str, dict[str, EndpointDemand]] = {}
        for row in rows:
            by_gateway.setdefault(row.gateway_id, {})[row.service_id] = _demand(row)
        return list(by_gateway.values())

    def reports_of(self, service_id: str, since: datetime) -> list[EndpointDemand]:
        """What each gateway reported of one endpoint at or after ``since``."""
        rows = self.session.scalars(
            select(GatewayDemandRow).where(
                (GatewayDemandRow.service_id == service_id)
                & (GatewayDemandRow.reported_at >= since)
            )
        )
        return [_demand(row) for row in rows]


def _demand(row: GatewayDemandRow) -> EndpointDemand:
    return EndpointDemand(
        in_flight=row.in_flight,
        waiting=row.waiting,
        arrived=row.arrived,
        held=row.held,
        busy_s=row.busy_s,
        waited_s=row.waited_s,
        answered=row.answered,
        errors=row.errors,
        latency_s=row.latency_s,
    )
