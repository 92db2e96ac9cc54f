"""The FastAPI application for the control-plane routes."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from moorage import __version__
from moorage.api import dashboard, openapi, schemas
from moorage.api.deps import MetricsAdmin, Services, ServicesDep
from moorage.api.errors import install_error_handlers
from moorage.api.responses import ADMIN, errors
from moorage.api.routers import (
    accounts,
    budgets,
    endpoints,
    events,
    flavors,
    gateway,
    logs,
    quotas,
    registry_credentials,
    secrets,
    traffic,
    usage,
)

DESCRIPTION = """
moorage runs dedicated inference endpoints on your own machines, with the
NetMind Power Dedicated Endpoints API. Send `Authorization: Bearer <token>` on
every call. An endpoint's replicas answer at
`/inference-api/v1/inference_service/{service_id}/...` on this same host.
"""


def create_api(
    services: Services,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The API over ``services``; ``lifespan`` runs what must live as long as it."""
    # No redirects for a trailing slash: Starlette builds them from the Host header.
    app = FastAPI(
        title="moorage",
        version=__version__,
        description=DESCRIPTION,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)

    @app.get(
        "/healthz",
        tags=["health"],
        summary="Liveness (no token needed)",
        response_model=schemas.Health,
    )
    def healthz() -> schemas.Health:
        return schemas.Health(status="ok")

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics (admin token)",
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **errors(ADMIN),
        },
    )
    def metrics(services: ServicesDep, _admin: MetricsAdmin) -> Response:
        return Response(services.metrics(), media_type=CONTENT_TYPE_LATEST)

    # The flavor route goes first: it would otherwise match /{service_id}.
    app.include_router(flavors.router)
    app.include_router(endpoints.router)
    app.include_router(logs.router)
    app.include_router(events.router)
    app.include_router(traffic.router)
    app.include_router(accounts.router)
    app.include_router(gateway.router)
    app.include_router(quotas.router)
    app.include_router(secrets.router)
    app.include_router(registry_credentials.router)
    app.include_router(usage.router)
    app.include_router(budgets.router)
    dashboard.install(app)
    openapi.install(app)
    return app
