"""What the gateway counts when a request ends (``GatewayRouter.finished``): every
response of an admitted request once, the gateway's own refusals included, errors at
500 and above, and its latency from arrival to the end of the response."""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace
from typing import cast

import pytest
from pydantic import ValidationError

from moorage.api.errors import describe_validation_errors
from moorage.gateway.dispatch import Dispatcher
from moorage.gateway.http1.exchange import Exchange
from moorage.gateway.metrics import GatewayMetrics
from moorage.gateway.router import GatewayRouter
from moorage.models.demand import EndpointDemand
from moorage.models.endpoints import GatewaySettings
from moorage.models.requests import EndpointDemandIn, GatewayDemandIn
from moorage.models.states import DesiredState
from moorage.routing.holder import RouteTableHolder
from moorage.routing.table import EndpointRoute, ReplicaRoute

RUNNING = EndpointRoute(
    "ep",
    frozenset(),
    (ReplicaRoute("a", "127.0.0.1:1"),),
    DesiredState.RUNNING,
    GatewaySettings(),
)
NOW = 110.0


def ended(route: EndpointRoute | None, status: int, note: str = "") -> Exchange:
    """An exchange as ``finished`` sees it: started at 100, ending at ``NOW``."""
    server = SimpleNamespace(now=lambda: NOW)
    return cast(
        Exchange,
        SimpleNamespace(route=route, status=status, note=note, started=100.0, server=server),
    )


def counted(*exchanges: Exchange) -> EndpointDemand:
    dispatcher = Dispatcher(lambda _service_id: RUNNING, random.Random(7))
    router = GatewayRouter(RouteTableHolder(), dispatcher, GatewayMetrics(dispatcher))
    for exchange in exchanges:
        router.finished(exchange)
    return dispatcher.snapshot().demand().of("ep")


def test_replica_answers_and_gateway_refusals_are_responses_errors_from_500() -> None:
    seen = counted(
        ended(RUNNING, 200),
        ended(RUNNING, 500),
        ended(RUNNING, 429, note="overloaded"),
        ended(RUNNING, 504, note="queue_timeout"),
    )
    assert (seen.answered, seen.errors) == (4, 2)
    assert seen.latency_s == pytest.approx(4 * (NOW - 100.0))


def test_requests_that_got_no_response_or_were_never_admitted_are_not_counted() -> None:
    stopped = dataclasses.replace(RUNNING, status_hint=DesiredState.STOPPED)
    seen = counted(
        ended(RUNNING, 0, note="client_closed"),  # left before any response
        ended(stopped, 503, note="endpoint_stopped"),  # not counted as arrived either
        ended(None, 404, note="not_found"),  # another user's, or no such endpoint
    )
    assert seen == EndpointDemand()


def test_a_report_without_the_counters_still_parses_and_bad_ones_are_refused() -> None:
    old = GatewayDemandIn.model_validate(
        {"gateway": "gw:1", "endpoints": {"ep": {"in_flight": 1, "arrived": 3}}}
    )
    assert old.endpoints["ep"].to_demand() == EndpointDemand(in_flight=1, arrived=3)
    new = EndpointDemandIn.model_validate({"answered": 3, "errors": 1, "latency_s": 0.5})
    assert new.to_demand() == EndpointDemand(answered=3, errors=1, latency_s=0.5)
    for field, value in (("errors", -1), ("answered", 2**60), ("latency_s", 1e300)):
        with pytest.raises(ValidationError) as refused:
            EndpointDemandIn.model_validate({field: value})
        assert field in describe_validation_errors(refused.value.errors())  # type: ignore[arg-type]
