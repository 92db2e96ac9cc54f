"""``GET /v1/inference-service/flavor``."""

from __future__ import annotations

from fastapi import APIRouter

from moorage.api import render, schemas
from moorage.api.deps import CurrentUser, ServicesDep
from moorage.api.responses import AUTH, errors

router = APIRouter(tags=["flavors"])


@router.get(
    "/v1/inference-service/flavor",
    summary="Get inference flavor",
    response_model=schemas.FlavorList,
    responses=errors(AUTH),
)
def list_flavors(services: ServicesDep, _user: CurrentUser) -> schemas.FlavorList:
    return render.flavor_list(services.flavors.list())
