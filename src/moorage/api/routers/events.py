"""``GET /v1/inference-service/{id}/events``: what happened to an endpoint, and why."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from moorage.api import schemas
from moorage.api.deps import CurrentUser, ServicesDep
from moorage.api.responses import AUTH, errors
from moorage.models.events import EndpointChange, EventPage, RecordedEvent
from moorage.services.endpoints import MAX_PAGE, MAX_PAGE_SIZE
from moorage.wire import format_timestamp

router = APIRouter(prefix="/v1/inference-service", tags=["endpoints"])


@router.get(
    "/{service_id}/events",
    summary="Endpoint events (changes, rollouts, replicas started, failed, stopped)",
    response_model=schemas.EventPage,
    responses=errors(AUTH, 400, 404, 422),
)
def endpoint_events(
    services: ServicesDep,
    user: CurrentUser,
    service_id: str,
    page: Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": MAX_PAGE})] = 1,
    page_size: Annotated[
        int, Query(json_schema_extra={"minimum": 1, "maximum": MAX_PAGE_SIZE})
    ] = 20,
) -> schemas.EventPage:
    return _page(services.endpoints.events(user, service_id, page=page, page_size=page_size))


def _item(item: RecordedEvent | EndpointChange) -> schemas.EndpointEvent:
    if isinstance(item, EndpointChange):
        return schemas.EndpointEvent(
            time=format_timestamp(item.at) or "",
            kind=item.kind,
            replica_id=None,
            revision=item.revision,
            reason=None,
            detail=None,
            message=item.message,
        )
    return schemas.EndpointEvent(
        time=format_timestamp(item.event.at) or "",
        kind=item.event.kind,
        replica_id=item.event.replica_id,
        revision=item.revision,
        reason=item.event.reason,
        detail=item.event.detail,
        message=item.message,
    )


def _page(page: EventPage) -> schemas.EventPage:
    return schemas.EventPage(
        event_list=[_item(item) for item in page.items],
        total=page.total,
        page=page.page,
        page_size=page.page_size,
    )
