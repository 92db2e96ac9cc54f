"""``/v1/inference-service``: the reference API's endpoint routes, plus list/stop/start."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from moorage.api import render, schemas
from moorage.api.deps import BaseUrl, CurrentUser, Services, ServicesDep
from moorage.api.examples import CREATE_EXAMPLE, UPDATE_EXAMPLE
from moorage.api.responses import AUTH, BODY, errors
from moorage.models.requests import CreateEndpointRequest, UpdateEndpointRequest
from moorage.services.endpoints import MAX_PAGE, MAX_PAGE_SIZE, EndpointView

router = APIRouter(prefix="/v1/inference-service", tags=["endpoints"])

# Writes that may start replicas (create, update, start): 402 when the owner's
# spending limit in the endpoint's currency is reached, 403 when a quota refuses,
# 503 when the flavor has no room for them now or the process runtime has no sandbox
# for a normal user's replicas.
QUOTA = (402, 403, 503)


def _render(services: Services, view: EndpointView, base_url: str) -> schemas.Endpoint:
    """The endpoint with its costs so far (``billing_metadata``)."""
    costs = services.billing.costs([view.endpoint])
    return render.endpoint(view, base_url, costs.get(view.endpoint.service_id))


@router.post(
    "",
    summary="Create endpoint",
    response_model=schemas.Endpoint,
    responses=errors(AUTH, BODY, QUOTA, 409),
)
def create_endpoint(
    services: ServicesDep,
    user: CurrentUser,
    base_url: BaseUrl,
    body: Annotated[CreateEndpointRequest, Body(openapi_examples=CREATE_EXAMPLE)],
) -> schemas.Endpoint:
    return _render(services, services.endpoints.create(user, body), base_url)


# The service checks the page bounds (400 naming the parameter); the schema says them too.
@router.get(
    "",
    summary="List your endpoints",
    response_model=schemas.EndpointPage,
    responses=errors(AUTH, 400, 422),
)
def list_endpoints(
    services: ServicesDep,
    user: CurrentUser,
    base_url: BaseUrl,
    page: Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": MAX_PAGE})] = 1,
    page_size: Annotated[
        int, Query(json_schema_extra={"minimum": 1, "maximum": MAX_PAGE_SIZE})
    ] = 20,
) -> schemas.EndpointPage:
    listed = services.endpoints.list(user, page=page, page_size=page_size)
    costs = services.billing.costs([v.endpoint for v in listed.items])
    return render.endpoint_page(listed, base_url, costs)


@router.get(
    "/{service_id}",
    summary="Get endpoint",
    response_model=schemas.Endpoint,
    responses=errors(AUTH, 404),
)
def get_endpoint(
    services: ServicesDep, user: CurrentUser, base_url: BaseUrl, service_id: str
) -> schemas.Endpoint:
    return _render(services, services.endpoints.get(user, service_id), base_url)


@router.put(
    "/{service_id}",
    summary="Update endpoint",
    response_model=schemas.Endpoint,
    responses=errors(AUTH, BODY, QUOTA, 404, 409),
)
def update_endpoint(
    services: ServicesDep,
    user: CurrentUser,
    base_url: BaseUrl,
    service_id: str,
    body: Annotated[UpdateEndpointRequest, Body(openapi_examples=UPDATE_EXAMPLE)],
) -> schemas.Endpoint:
    return _render(services, services.endpoints.update(user, service_id, body), base_url)


@router.delete(
    "/{service_id}",
    summary="Delete endpoint",
    response_model=schemas.Endpoint,
    responses=errors(AUTH, 404),
)
def delete_endpoint(
    services: ServicesDep, user: CurrentUser, base_url: BaseUrl, service_id: str
) -> schemas.Endpoint:
    return _render(services, services.endpoints.delete(user, service_id), base_url)


@router.post(
    "/{service_id}/stop",
    summary="Stop endpoint (no replica runs)",
    response_model=schemas.Endpoint,
    responses=errors(AUTH, 404),
)
def stop_endpoint(
    services: ServicesDep, user: CurrentUser, base_url: BaseUrl, service_id: str
) -> schemas.Endpoint:
    return _render(services, services.endpoints.set_running(user, service_id, False), base_url)


@router.post(
    "/{service_id}/start",
    summary="Start a stopped endpoint",
    response_model=schemas.Endpoint,
    responses=errors(AUTH, 400, QUOTA, 404),
)
def start_endpoint(
    services: ServicesDep, user: CurrentUser, base_url: BaseUrl, service_id: str
) -> schemas.Endpoint:
    return _render(services, services.endpoints.set_running(user, service_id, True), base_url)
