"""``GET /v1/inference-service/{id}/logs``: what the replicas print."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from moorage.api.deps import CurrentUser, ServicesDep

router = APIRouter(prefix="/v1/inference-service", tags=["endpoints"])


@router.get("/{service_id}/logs", summary="Replica logs (stdout and stderr)")
def endpoint_logs(
    services: ServicesDep,
    user: CurrentUser,
    service_id: str,
    replica: Annotated[str | None, Query(description="A replica id (or prefix).")] = None,
    tail: Annotated[int | None, Query(description="Only the last N lines of each.")] = None,
    follow: Annotated[bool, Query(description="Keep streaming new output.")] = False,
) -> StreamingResponse:
    replica_ids = services.logs.replicas(user, service_id, replica)
    stream = services.logs.stream(replica_ids, tail=tail, follow=follow, user=user)
    return StreamingResponse(stream, media_type="text/plain; charset=utf-8")
