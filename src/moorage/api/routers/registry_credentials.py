"""``/v1/registry-credentials``: the caller's logins for private image registries.

Write-only, like secrets: the docker runtime pulls the caller's images from a
registry with the credentials stored for it; reads list registries only.
"""

from __future__ import annotations

from fastapi import APIRouter

from moorage.api.account_schemas import RegistryCredentialList, RegistryCredentialOut
from moorage.api.deps import CurrentUser, ServicesDep
from moorage.api.responses import AUTH, BODY, errors
from moorage.models.requests import RegistryCredentialIn
from moorage.services.secrets import SecretInfo
from moorage.wire import timestamp

router = APIRouter(prefix="/v1", tags=["secrets"])


def _render(info: SecretInfo) -> RegistryCredentialOut:
    return RegistryCredentialOut(
        registry=info.name,
        created_at=timestamp(info.created_at),
        updated_at=timestamp(info.updated_at),
    )


@router.put(
    "/registry-credentials/{registry}",
    summary="Store your login for a registry (never shown again)",
    response_model=RegistryCredentialOut,
    responses=errors(AUTH, BODY, 403),
)
def put_credentials(
    services: ServicesDep, user: CurrentUser, registry: str, body: RegistryCredentialIn
) -> RegistryCredentialOut:
    return _render(services.registry_credentials.put(user, registry, body.username, body.password))


@router.get(
    "/registry-credentials",
    summary="List the registries you stored logins for",
    response_model=RegistryCredentialList,
    responses=errors(AUTH),
)
def list_credentials(services: ServicesDep, user: CurrentUser) -> RegistryCredentialList:
    return RegistryCredentialList(
        registry_credential_list=[_render(c) for c in services.registry_credentials.list(user)]
    )


@router.delete(
    "/registry-credentials/{registry}",
    summary="Delete your login for a registry",
    response_model=RegistryCredentialOut,
    responses=errors(AUTH, 400, 404),
)
def delete_credentials(
    services: ServicesDep, user: CurrentUser, registry: str
) -> RegistryCredentialOut:
    """Answers what was deleted (the registry and times)."""
    return _render(services.registry_credentials.delete(user, registry))
