"""``GET /v1/inference-service/flavor``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from moorage.api import render
from moorage.api.deps import CurrentUser, ServicesDep

router = APIRouter(tags=["flavors"])


@router.get("/v1/inference-service/flavor", summary="Get inference flavor")
def list_flavors(services: ServicesDep, _user: CurrentUser) -> dict[str, Any]:
    return {"flavor_list": [render.flavor(f) for f in services.flavors.list()]}
