"""``GET /v1/inference-service/{id}/traffic``: an endpoint's request counters, for its
owner's request-rate, error-rate and latency charts (``services/traffic.py``)."""

from __future__ import annotations

from fastapi import APIRouter

from moorage.api import schemas
from moorage.api.deps import CurrentUser, ServicesDep
from moorage.api.responses import AUTH, errors
from moorage.wire import format_timestamp

router = APIRouter(prefix="/v1/inference-service", tags=["endpoints"])


@router.get(
    "/{service_id}/traffic",
    summary="Endpoint traffic (requests, responses, errors, latency; cumulative counters)",
    response_model=schemas.EndpointTraffic,
    responses=errors(AUTH, 404),
)
async def endpoint_traffic(
    services: ServicesDep, user: CurrentUser, service_id: str
) -> schemas.EndpointTraffic:
    # A coroutine: this process's gateway is read on the event loop it runs on.
    traffic = await services.traffic.of(user, service_id)
    seen = traffic.seen
    return schemas.EndpointTraffic(
        service_id=traffic.service_id,
        time=format_timestamp(traffic.at) or "",
        in_flight=seen.in_flight,
        waiting=seen.waiting,
        requests_total=seen.arrived,
        responses_total=seen.answered,
        errors_total=seen.errors,
        latency_seconds_total=seen.latency_s,
    )
