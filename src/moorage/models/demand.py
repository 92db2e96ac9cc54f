"""What gateways see of each endpoint's load: the autoscaler's input.

Every gateway counts, per endpoint, the requests in flight at its replicas and
those waiting (queued, or held while a replica starts) now, and, since it
started, the requests admitted, the requests held while no replica was ready,
and the time integrals of requests in flight and waiting (request-seconds).
Counters are read as differences between two readings: admitted per second, and
the mean concurrency over the interval (which a look at one instant misses when
requests are short). The gateway in
``moorage serve``'s own process is read directly; standalone gateways report
theirs (``POST /v1/gateway/demand``), kept a few seconds in the store. The
autoscaler sums them all. The same counters, with the responses each gateway
finished, their errors and latencies, are the owner's traffic
(``GET /v1/inference-service/{id}/traffic``).
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
    arrived: int = 0  # since the gateway started, as are the three below
    held: int = 0
    busy_s: float = 0.0
    waited_s: float = 0.0
    # Since the gateway started too, for the owner's traffic charts: responses
    # finished (any status, the gateway's own refusals included), those with a status
    # of 500 or more, and the sum of their latencies, arrival to the response's end.
    answered: int = 0
    errors: int = 0
    latency_s: float = 0.0


@dataclass(frozen=True)
class Demand:
    """Every endpoint's demand at one moment, by ``service_id``."""

    endpoints: Mapping[str, EndpointDemand] = field(default_factory=dict)

    def plus(self, reports: Iterable[Mapping[str, EndpointDemand]]) -> Demand:
        """This demand with other gateways' reports added, endpoint by endpoint."""
        total = dict(self.endpoints)
        for report in reports:
            for service_id, seen in report.items():
                mine = total.get(service_id)
                total[service_id] = seen if mine is None else _sum(mine, seen)
        return Demand(total)

    def of(self, service_id: str) -> EndpointDemand:
        return self.endpoints.get(service_id, NO_DEMAND)


NO_DEMAND = EndpointDemand()


def _sum(one: EndpointDemand, other: EndpointDemand) -> EndpointDemand:
    return EndpointDemand(
        one.in_flight + other.in_flight,
        one.waiting + other.waiting,
        one.arrived + other.arrived,
        one.held + other.held,
        one.busy_s + other.busy_s,
        one.waited_s + other.waited_s,
        one.answered + other.answered,
        one.errors + other.errors,
        one.latency_s + other.latency_s,
    )
