"""``GET /v1/inference-service/{id}/logs``: what the replicas print."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from moorage.api.deps import BearerToken, CurrentUser, ServicesDep
from moorage.api.responses import AUTH, errors

router = APIRouter(prefix="/v1/inference-service", tags=["endpoints"])


@router.get(
    "/{service_id}/logs",
    summary="Replica logs (stdout and stderr)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Lines of text, each prefixed `[replica] ` when there are several.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        # 400: an unknown replica or a tail out of range; 429: too many followers.
        **errors(AUTH, 400, 404, 422, 429),
    },
)
def endpoint_logs(
    services: ServicesDep,
    user: CurrentUser,
    token: BearerToken,
    service_id: str,
    replica: Annotated[str | None, Query(description="A replica id (or prefix).")] = None,
    tail: Annotated[int | None, Query(description="Only the last N lines of each.")] = None,
    follow: Annotated[bool, Query(description="Keep streaming new output.")] = False,
) -> StreamingResponse:
    replica_ids = services.logs.replicas(user, service_id, replica)

    def still_allowed() -> None:
        """A follower reads on only while its token is valid (not revoked since) and
        the endpoint is still its user's (not deleted since)."""
        services.accounts.authenticate(token)
        services.logs.replicas(user, service_id, None)

    stream = services.logs.stream(
        replica_ids, tail=tail, follow=follow, user=user, still_allowed=still_allowed
    )
    return StreamingResponse(stream, media_type="text/plain; charset=utf-8")
