"""``/v1/gateway/routes``: the route table for standalone gateways (admin token).

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
from moorage.api.deps import RoutesAdmin, ServicesDep
from moorage.api.responses import ADMIN, errors

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
