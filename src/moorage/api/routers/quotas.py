"""``/v1/users/{user_id}/quota`` and ``/v1/quota``: per-user quotas.

The admin reads and changes any user's quotas; a user reads their own (with
their own token, at either path) and changes nothing.
"""

from __future__ import annotations

from fastapi import APIRouter

from moorage.api.account_schemas import QuotaLimits, QuotaOut, QuotaUsage
from moorage.api.deps import CurrentUser, QuotaAdmin, ServicesDep, UserIdPath
from moorage.api.responses import ADMIN, AUTH, BODY, errors
from moorage.errors import Forbidden
from moorage.models.requests import QuotaPatch
from moorage.services.quotas import QuotaView

router = APIRouter(prefix="/v1", tags=["quotas"])


def _render(view: QuotaView) -> QuotaOut:
    limits = view.limits
    return QuotaOut(
        user_id=view.user_id,
        quota=QuotaLimits(
            endpoints=limits.endpoints,
            replicas=limits.replicas,
            flavor_share=limits.flavor_share,
            command_bytes=limits.command_bytes,
            env_vars=limits.env_vars,
            env_bytes=limits.env_bytes,
            name_chars=limits.name_chars,
            description_chars=limits.description_chars,
            log_followers=limits.log_followers,
            secrets=limits.secrets,
        ),
        custom=sorted(view.custom),
        usage=QuotaUsage(
            endpoints=view.endpoints,
            replicas=view.replicas,
            replicas_by_flavor=dict(view.replicas_by_flavor),
            gpus_by_flavor=dict(view.gpus_by_flavor),
        ),
    )


@router.get(
    "/quota", summary="Your quotas and usage", response_model=QuotaOut, responses=errors(AUTH)
)
def own_quota(services: ServicesDep, user: CurrentUser) -> QuotaOut:
    return _render(services.quotas.get(user.user_id))


@router.get(
    "/users/{user_id}/quota",
    summary="A user's quotas and usage (admin, or the user)",
    response_model=QuotaOut,
    responses=errors(ADMIN, 404, 422),
)
def user_quota(services: ServicesDep, user: CurrentUser, user_id: UserIdPath) -> QuotaOut:
    if not user.is_admin and user.user_id != user_id:
        raise Forbidden("reading another user's quota needs the admin token")
    return _render(services.quotas.get(user_id))


@router.put(
    "/users/{user_id}/quota",
    summary="Change a user's quotas (partial; null restores the default)",
    response_model=QuotaOut,
    responses=errors(ADMIN, BODY, 404),
)
def update_quota(
    services: ServicesDep, _admin: QuotaAdmin, user_id: UserIdPath, body: QuotaPatch
) -> QuotaOut:
    return _render(services.quotas.update(user_id, body))
