"""What gateways see of each endpoint's load: the autoscaler's input.

Every gateway counts, per endpoint, the requests in flight at its replicas, those
waiting (queued, or held while a replica starts) and those admitted since it
started (a counter, so a rate is the difference of two readings). The gateway in
``moorage serve``'s own process is read directly; standalone gateways report
theirs (``POST /v1/gateway/demand``), kept a few seconds in the store. The
autoscaler sums them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

# A standalone gateway reports every second; a report older than this no longer
# counts (the gateway went away, or cannot reach the control plane).
REPORT_FRESH_FOR = timedelta(seconds=5)


@dataclass(frozen=True)
class EndpointDemand:
    in_flight: int = 0
    waiting: int = 0
    arrived: int = 0  # since the gateway started: a counter


@dataclass(frozen=True)
class Demand:
    """Every endpoint's demand at one moment, by ``service_id``."""

    in_flight: Mapping[str, int] = field(default_factory=dict)
    waiting: Mapping[str, int] = field(default_factory=dict)
    arrived: Mapping[str, int] = field(default_factory=dict)

    def plus(self, reports: Iterable[Mapping[str, EndpointDemand]]) -> Demand:
        """This demand with other gateways' reports added, endpoint by endpoint."""
        in_flight, waiting, arrived = dict(self.in_flight), dict(self.waiting), dict(self.arrived)
        for report in reports:
            for service_id, seen in report.items():
                in_flight[service_id] = in_flight.get(service_id, 0) + seen.in_flight
                waiting[service_id] = waiting.get(service_id, 0) + seen.waiting
                arrived[service_id] = arrived.get(service_id, 0) + seen.arrived
        return Demand(in_flight, waiting, arrived)

    def of(self, service_id: str) -> EndpointDemand:
        return EndpointDemand(
            self.in_flight.get(service_id, 0),
            self.waiting.get(service_id, 0),
            self.arrived.get(service_id, 0),
        )
