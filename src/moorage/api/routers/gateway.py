"""``/v1/gateway/routes``: the route table for standalone gateways (admin token);
``/v1/gateway/demand``: what each of them sees of the endpoints' load, for the
autoscaler (``models/demand.py``).

A gateway long-polls: with ``version`` set to the table it holds, the call
returns as soon as the table changes, or after ``wait`` seconds with the same
table, so routing changes reach every gateway within moments without a
request storm. The table is the store's (``services.routes``), so this answers
whether or not the controller runs in this process.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from moorage.api import schemas
from moorage.api.deps import DemandAdmin, RoutesAdmin, ServicesDep
from moorage.api.responses import ADMIN, BODY, errors
from moorage.models.requests import GatewayDemandIn

router = APIRouter(prefix="/v1/gateway", tags=["gateway"])


@router.get(
    "/routes",
    summary="The gateway route table (admin token; long-poll)",
    response_model=schemas.RouteTable,
    responses=errors(ADMIN, 422),
)
async def routes(
    services: ServicesDep,
    _admin: RoutesAdmin,
    version: Annotated[str | None, Query(description="The version you hold")] = None,
    wait: Annotated[float, Query(ge=0, le=60, description="Seconds to wait for a change")] = 0,
) -> schemas.RouteTable:
    body = await services.routes.changed_from(version, wait)
    return schemas.RouteTable.model_validate(body)


@router.post(
    "/demand",
    summary="A standalone gateway's demand per endpoint (admin token)",
    description="Requests in flight, waiting and admitted (a counter since the gateway "
    "started) per endpoint, as one gateway sees them now; it replaces that gateway's "
    "previous report and counts for a few seconds. `moorage gateway` sends one every "
    "second, and at once when it holds a request for an endpoint with no replica ready.",
    response_model=schemas.DemandAccepted,
    responses=errors(ADMIN, BODY),
)
def demand(
    services: ServicesDep, _admin: DemandAdmin, body: GatewayDemandIn
) -> schemas.DemandAccepted:
    services.demand.report(
        body.gateway, {sid: seen.to_demand() for sid, seen in body.endpoints.items()}
    )
    return schemas.DemandAccepted(endpoints=len(body.endpoints))
