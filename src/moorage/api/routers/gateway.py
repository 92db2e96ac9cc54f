"""``/v1/gateway/routes``: the route table for standalone gateways (admin token).

A gateway long-polls: with ``version`` set to the table it holds, the call
returns as soon as the table changes, or after ``wait`` seconds with the same
table, so routing changes reach every gateway within moments without a
request storm.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from moorage.api import schemas
from moorage.api.deps import AdminUser, ServicesDep
from moorage.api.responses import ADMIN, errors
from moorage.routing.codec import table_to_json

router = APIRouter(prefix="/v1/gateway", tags=["gateway"])


@router.get(
    "/routes",
    summary="The gateway route table (admin token; long-poll)",
    response_model=schemas.RouteTable,
    responses=errors(ADMIN, 422),
)
async def routes(
    services: ServicesDep,
    _admin: AdminUser,
    version: Annotated[str | None, Query(description="The version you hold")] = None,
    wait: Annotated[float, Query(ge=0, le=60, description="Seconds to wait for a change")] = 0,
) -> schemas.RouteTable:
    holder = services.routes
    body = table_to_json(holder.current)
    deadline = time.monotonic() + wait
    # The controller republishes every pass; only a different table ends the wait.
    while body["version"] == version and (remaining := deadline - time.monotonic()) > 0:
        await holder.next_swap(remaining)
        body = table_to_json(holder.current)
    return schemas.RouteTable.model_validate(body)
