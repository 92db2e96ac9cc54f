"""``/v1/users`` and ``/v1/tokens``: admin-only management of who may call moorage."""

from __future__ import annotations

from fastapi import APIRouter, Response

from moorage.api import render, schemas
from moorage.api.deps import AdminUser, ServicesDep
from moorage.api.responses import ADMIN, BODY, errors
from moorage.models.requests import CreateTokenRequest, CreateUserRequest

router = APIRouter(prefix="/v1", tags=["accounts"])


@router.post(
    "/users",
    summary="Create a user",
    status_code=201,
    response_model=schemas.User,
    responses=errors(ADMIN, BODY, 409),
)
def create_user(services: ServicesDep, _admin: AdminUser, body: CreateUserRequest) -> schemas.User:
    return render.user(services.accounts.create_user(body.name))


@router.get(
    "/users", summary="List users", response_model=schemas.UserList, responses=errors(ADMIN)
)
def list_users(services: ServicesDep, _admin: AdminUser) -> schemas.UserList:
    return schemas.UserList(user_list=[render.user(u) for u in services.accounts.list_users()])


@router.post(
    "/tokens",
    summary="Create a token (its text is shown only here)",
    status_code=201,
    response_model=schemas.IssuedToken,
    responses=errors(ADMIN, BODY, 404),
)
def create_token(
    services: ServicesDep, _admin: AdminUser, body: CreateTokenRequest, response: Response
) -> schemas.IssuedToken:
    # The token's text is in this answer only: no cache on the way may keep it.
    response.headers["Cache-Control"] = "no-store"
    issued = services.accounts.create_token(
        user_id=body.user_id, user_name=body.user_name, name=body.name
    )
    return render.issued_token(issued.record, issued.token)


@router.get(
    "/tokens",
    summary="List tokens (never their text)",
    response_model=schemas.TokenList,
    responses=errors(ADMIN),
)
def list_tokens(services: ServicesDep, _admin: AdminUser) -> schemas.TokenList:
    return schemas.TokenList(token_list=[render.token(t) for t in services.accounts.list_tokens()])


@router.delete(
    "/tokens/{token_id}",
    summary="Revoke a token",
    response_model=schemas.Token,
    # 409: the configured admin token cannot be revoked through the API.
    responses=errors(ADMIN, 404, 409),
)
def revoke_token(services: ServicesDep, _admin: AdminUser, token_id: str) -> schemas.Token:
    return render.token(services.accounts.revoke_token(token_id))
