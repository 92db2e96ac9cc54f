"""Request dependencies as ``Annotated`` aliases, so routes declare what they need."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from moorage.models.accounts import User
from moorage.services.accounts import AccountService
from moorage.services.budgets import BudgetService
from moorage.services.demand import DemandService
from moorage.services.endpoint_billing import EndpointBillingService
from moorage.services.endpoints import EndpointService
from moorage.services.flavors import FlavorService
from moorage.services.logs import LogService
from moorage.services.quotas import QuotaService
from moorage.services.registry_credentials import RegistryCredentialService
from moorage.services.routes import RouteFeed
from moorage.services.secrets import SecretService
from moorage.services.traffic import TrafficService
from moorage.services.usage import UsageService


@dataclass(frozen=True)
class Services:
    accounts: AccountService
    endpoints: EndpointService
    flavors: FlavorService
    logs: LogService
    metrics: Callable[[], bytes]
    routes: RouteFeed
    # Where users reach moorage (MOORAGE_PUBLIC_URL, else the listen address): the
    # only source of endpoint URLs, never a request's Host or X-Forwarded-* headers.
    public_url: str
    quotas: QuotaService
    secrets: SecretService
    registry_credentials: RegistryCredentialService
    billing: EndpointBillingService
    budgets: BudgetService
    usage: UsageService
    demand: DemandService
    traffic: TrafficService


# Dependencies that neither block nor touch the store are coroutines: FastAPI runs
# plain functions in its thread pool, a hop per dependency per request.


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
_bearer = HTTPBearer(auto_error=False, description="Your moorage API token.")


def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """The caller's token text, for a long call (a log follower) to check it again."""
    return credentials.credentials if credentials else None


async def current_user(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """A token seen in the last seconds is known without the store (no thread hop);
    any other is looked up in a worker thread."""
    token = credentials.credentials if credentials else None
    user = services.accounts.recently_authenticated(token)
    if user is None:
        user = await run_in_threadpool(services.accounts.authenticate, token)
    return user


def _admin_for(action: str) -> Callable[..., Awaitable[User]]:
    """A dependency that lets only the admin through; a refusal names ``action``, so a
    user learns which call needs the admin token."""

    async def admin_user(
        services: ServicesDep, user: Annotated[User, Depends(current_user)]
    ) -> User:
        services.accounts.require_admin(user, action)
        return user

    return admin_user


async def base_url(services: ServicesDep) -> str:
    """The configured base URL: request headers are the client's to choose, so they
    never reach an endpoint URL another client may follow."""
    return services.public_url


CurrentUser = Annotated[User, Depends(current_user)]
BearerToken = Annotated[str | None, Depends(bearer_token)]
AdminUser = Annotated[User, Depends(_admin_for("managing users and tokens"))]
QuotaAdmin = Annotated[User, Depends(_admin_for("changing a user's quotas"))]
BudgetAdmin = Annotated[User, Depends(_admin_for("managing users' spending limits"))]
MetricsAdmin = Annotated[User, Depends(_admin_for("reading metrics"))]
RoutesAdmin = Annotated[User, Depends(_admin_for("reading the gateway's route table"))]
DemandAdmin = Annotated[User, Depends(_admin_for("reporting a gateway's demand"))]
BaseUrl = Annotated[str, Depends(base_url)]


# Ids in paths are bounded like every input: a user id is 32 characters, so 64 leaves
# room and a longer one is refused (422) before any lookup echoes it back.
UserIdPath = Annotated[str, Path(max_length=64, description="The user's id.")]
CurrencyPath = Annotated[str, Path(max_length=8, description="usd, cny or nmt.", examples=["usd"])]
