"""``/v1/users`` and ``/v1/tokens``: admin-only management of who may call moorage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from moorage.api import render
from moorage.api.deps import AdminUser, ServicesDep
from moorage.models.requests import CreateTokenRequest, CreateUserRequest

router = APIRouter(prefix="/v1", tags=["accounts"])


@router.post("/users", summary="Create a user", status_code=201)
def create_user(
    services: ServicesDep, _admin: AdminUser, body: CreateUserRequest
) -> dict[str, Any]:
    return render.user(services.accounts.create_user(body.name))


@router.get("/users", summary="List users")
def list_users(services: ServicesDep, _admin: AdminUser) -> dict[str, Any]:
    return {"user_list": [render.user(u) for u in services.accounts.list_users()]}


@router.post("/tokens", summary="Create a token (its text is shown only here)", status_code=201)
def create_token(
    services: ServicesDep, _admin: AdminUser, body: CreateTokenRequest
) -> dict[str, Any]:
    issued = services.accounts.create_token(
        user_id=body.user_id, user_name=body.user_name, name=body.name
    )
    return {**render.token(issued.record), "token": issued.token}


@router.get("/tokens", summary="List tokens (never their text)")
def list_tokens(services: ServicesDep, _admin: AdminUser) -> dict[str, Any]:
    return {"token_list": [render.token(t) for t in services.accounts.list_tokens()]}


@router.delete("/tokens/{token_id}", summary="Revoke a token")
def revoke_token(services: ServicesDep, _admin: AdminUser, token_id: str) -> dict[str, Any]:
    return render.token(services.accounts.revoke_token(token_id))
