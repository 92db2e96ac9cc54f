"""``/v1/secrets``: the caller's write-only secrets, listed by name only.

A value goes in with PUT and never comes out: replicas of the caller's
endpoints naming it in ``deploy_metadata.secrets`` get it as an environment
variable. Each user has their own; the admin's token manages the admin's.
"""

from __future__ import annotations

from fastapi import APIRouter

from moorage.api.account_schemas import SecretList, SecretOut
from moorage.api.deps import CurrentUser, ServicesDep
from moorage.api.responses import AUTH, BODY, errors
from moorage.models.requests import SecretIn
from moorage.services.secrets import SecretInfo
from moorage.wire import timestamp

router = APIRouter(prefix="/v1", tags=["secrets"])


def _render(info: SecretInfo) -> SecretOut:
    return SecretOut(
        name=info.name, created_at=timestamp(info.created_at), updated_at=timestamp(info.updated_at)
    )


@router.put(
    "/secrets/{name}",
    summary="Store a secret (creates or replaces; the value is never shown again)",
    response_model=SecretOut,
    responses=errors(AUTH, BODY, 403),
)
def put_secret(services: ServicesDep, user: CurrentUser, name: str, body: SecretIn) -> SecretOut:
    return _render(services.secrets.put(user, name, body.value))


@router.get(
    "/secrets",
    summary="List your secrets: names and times, never values",
    response_model=SecretList,
    responses=errors(AUTH),
)
def list_secrets(services: ServicesDep, user: CurrentUser) -> SecretList:
    return SecretList(secret_list=[_render(s) for s in services.secrets.list(user)])


@router.delete(
    "/secrets/{name}",
    summary="Delete a secret (running replicas keep the value they started with)",
    response_model=SecretOut,
    responses=errors(AUTH, 400, 404),
)
def delete_secret(services: ServicesDep, user: CurrentUser, name: str) -> SecretOut:
    """Answers what was deleted (its name and times)."""
    return _render(services.secrets.delete(user, name))
