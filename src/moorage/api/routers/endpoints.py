"""``/v1/inference-service``: the reference API's endpoint routes, plus list/stop/start."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from moorage.api import render
from moorage.api.deps import BaseUrl, CurrentUser, ServicesDep
from moorage.api.examples import CREATE_EXAMPLE, UPDATE_EXAMPLE
from moorage.models.requests import CreateEndpointRequest, UpdateEndpointRequest

router = APIRouter(prefix="/v1/inference-service", tags=["endpoints"])


@router.post("", summary="Create endpoint")
def create_endpoint(
    services: ServicesDep,
    user: CurrentUser,
    base_url: BaseUrl,
    body: Annotated[CreateEndpointRequest, Body(openapi_examples=CREATE_EXAMPLE)],
) -> dict[str, Any]:
    return render.endpoint(services.endpoints.create(user, body), base_url)


@router.get("", summary="List your endpoints")
def list_endpoints(
    services: ServicesDep,
    user: CurrentUser,
    base_url: BaseUrl,
    page: Annotated[int, Query()] = 1,
    page_size: Annotated[int, Query()] = 20,
) -> dict[str, Any]:
    return render.endpoint_page(
        services.endpoints.list(user, page=page, page_size=page_size), base_url
    )


@router.get("/{service_id}", summary="Get endpoint")
def get_endpoint(
    services: ServicesDep, user: CurrentUser, base_url: BaseUrl, service_id: str
) -> dict[str, Any]:
    return render.endpoint(services.endpoints.get(user, service_id), base_url)


@router.put("/{service_id}", summary="Update endpoint")
def update_endpoint(
    services: ServicesDep,
    user: CurrentUser,
    base_url: BaseUrl,
    service_id: str,
    body: Annotated[UpdateEndpointRequest, Body(openapi_examples=UPDATE_EXAMPLE)],
) -> dict[str, Any]:
    return render.endpoint(services.endpoints.update(user, service_id, body), base_url)


@router.delete("/{service_id}", summary="Delete endpoint")
def delete_endpoint(
    services: ServicesDep, user: CurrentUser, base_url: BaseUrl, service_id: str
) -> dict[str, Any]:
    return render.endpoint(services.endpoints.delete(user, service_id), base_url)


@router.post("/{service_id}/stop", summary="Stop endpoint (no replica runs)")
def stop_endpoint(
    services: ServicesDep, user: CurrentUser, base_url: BaseUrl, service_id: str
) -> dict[str, Any]:
    return render.endpoint(services.endpoints.set_running(user, service_id, False), base_url)


@router.post("/{service_id}/start", summary="Start a stopped endpoint")
def start_endpoint(
    services: ServicesDep, user: CurrentUser, base_url: BaseUrl, service_id: str
) -> dict[str, Any]:
    return render.endpoint(services.endpoints.set_running(user, service_id, True), base_url)
