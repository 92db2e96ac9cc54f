"""Every route of the API as a description of one call: method, path, query, body and
the model its answer is read into.

The sync and async clients run the same descriptions, so a route is written once and
both clients stay alike. Path parameters are escaped here (an id or a name holding
``/`` or ``..`` stays one path segment), and bodies are JSON: the client's pydantic
models are dumped as the server reads them, plain mappings are sent as they are and
validated by the server, which names any bad field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

from moorage.api import account_schemas as accounts
from moorage.api import schemas
from moorage.models.requests import CreateEndpointRequest, UpdateEndpointRequest
from moorage.sdk.errors import INVALID_ARGUMENT, ApiError

T = TypeVar("T")

ENDPOINTS = "/v1/inference-service"
Body = Mapping[str, Any] | BaseModel


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    answer: TypeAdapter[T]
    params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    accept: str = "application/json"


def _segment(value: str) -> str:
    """One path segment, whatever ``value`` holds: ``/``, ``?`` and ``#`` escaped,
    ``.`` or ``..`` (which a URL resolves away) written ``%2E``, and never empty."""
    if not value:
        # An empty one would make the call one on the collection (``.../``).
        raise ApiError(0, INVALID_ARGUMENT, "an empty id or name names nothing; give one")
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


def _body(body: Body) -> Any:
    if isinstance(body, BaseModel):
        return body.model_dump(mode="json", exclude_unset=True)
    return dict(body)


def _params(**values: object) -> dict[str, str]:
    return {
        name.rstrip("_"): str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in values.items()
        if value is not None
    }


_TEXT = TypeAdapter(str)
_HEALTH = TypeAdapter(schemas.Health)
_FLAVORS = TypeAdapter(schemas.FlavorList)
_ENDPOINT = TypeAdapter(schemas.Endpoint)
_ENDPOINT_PAGE = TypeAdapter(schemas.EndpointPage)
_EVENT_PAGE = TypeAdapter(schemas.EventPage)
_TRAFFIC = TypeAdapter(schemas.EndpointTraffic)
_USER = TypeAdapter(schemas.User)
_USERS = TypeAdapter(schemas.UserList)
_TOKEN = TypeAdapter(schemas.Token)
_ISSUED = TypeAdapter(schemas.IssuedToken)
_TOKENS = TypeAdapter(schemas.TokenList)
_USAGE = TypeAdapter(accounts.UsageOut)
_QUOTA = TypeAdapter(accounts.QuotaOut)
_BUDGET = TypeAdapter(accounts.BudgetOut)
_BUDGETS = TypeAdapter(accounts.BudgetsOut)
_SECRET = TypeAdapter(accounts.SecretOut)
_SECRETS = TypeAdapter(accounts.SecretList)
_CREDENTIAL = TypeAdapter(accounts.RegistryCredentialOut)
_CREDENTIALS = TypeAdapter(accounts.RegistryCredentialList)
_ROUTES = TypeAdapter(schemas.RouteTable)


def health() -> Call[schemas.Health]:
    return Call("GET", "/healthz", _HEALTH)


def metrics() -> Call[str]:
    return Call("GET", "/metrics", _TEXT, accept="text/plain")


def list_flavors() -> Call[schemas.FlavorList]:
    return Call("GET", f"{ENDPOINTS}/flavor", _FLAVORS)


# -- endpoints ----------------------------------------------------------------------------


def create_endpoint(body: Mapping[str, Any] | CreateEndpointRequest) -> Call[schemas.Endpoint]:
    return Call("POST", ENDPOINTS, _ENDPOINT, json=_body(body))


def list_endpoints(page: int = 1, page_size: int = 20) -> Call[schemas.EndpointPage]:
    return Call("GET", ENDPOINTS, _ENDPOINT_PAGE, _params(page=page, page_size=page_size))


def get_endpoint(service_id: str) -> Call[schemas.Endpoint]:
    return Call("GET", f"{ENDPOINTS}/{_segment(service_id)}", _ENDPOINT)


def update_endpoint(
    service_id: str, changes: Mapping[str, Any] | UpdateEndpointRequest
) -> Call[schemas.Endpoint]:
    return Call("PUT", f"{ENDPOINTS}/{_segment(service_id)}", _ENDPOINT, json=_body(changes))


def scale_endpoint(service_id: str, replicas: int) -> Call[schemas.Endpoint]:
    return update_endpoint(service_id, {"resource_metadata": {"target_instance_number": replicas}})


def stop_endpoint(service_id: str) -> Call[schemas.Endpoint]:
    return Call("POST", f"{ENDPOINTS}/{_segment(service_id)}/stop", _ENDPOINT)


def start_endpoint(service_id: str) -> Call[schemas.Endpoint]:
    return Call("POST", f"{ENDPOINTS}/{_segment(service_id)}/start", _ENDPOINT)


def delete_endpoint(service_id: str) -> Call[schemas.Endpoint]:
    return Call("DELETE", f"{ENDPOINTS}/{_segment(service_id)}", _ENDPOINT)


def list_events(service_id: str, page: int = 1, page_size: int = 20) -> Call[schemas.EventPage]:
    return Call(
        "GET",
        f"{ENDPOINTS}/{_segment(service_id)}/events",
        _EVENT_PAGE,
        _params(page=page, page_size=page_size),
    )


def traffic(service_id: str) -> Call[schemas.EndpointTraffic]:
    return Call("GET", f"{ENDPOINTS}/{_segment(service_id)}/traffic", _TRAFFIC)


def logs(
    service_id: str, *, replica: str | None = None, tail: int | None = None, follow: bool = False
) -> Call[str]:
    return Call(
        "GET",
        f"{ENDPOINTS}/{_segment(service_id)}/logs",
        _TEXT,
        _params(replica=replica, tail=tail, follow=follow),
        accept="text/plain",
    )


# -- usage, quotas, budgets -----------------------------------------------------------------


def usage(
    *,
    from_: str | None = None,
    to: str | None = None,
    group_by: str = "endpoint",
    user_id: str | None = None,
    csv: bool = False,
) -> Call[Any]:
    params = _params(from_=from_, to=to, group_by=group_by, user_id=user_id)
    if csv:
        return Call("GET", "/v1/usage", _TEXT, params, accept="text/csv")
    return Call("GET", "/v1/usage", _USAGE, params)


def quota() -> Call[accounts.QuotaOut]:
    return Call("GET", "/v1/quota", _QUOTA)


def user_quota(user_id: str) -> Call[accounts.QuotaOut]:
    return Call("GET", f"/v1/users/{_segment(user_id)}/quota", _QUOTA)


def set_user_quota(user_id: str, changes: Mapping[str, Any]) -> Call[accounts.QuotaOut]:
    return Call("PUT", f"/v1/users/{_segment(user_id)}/quota", _QUOTA, json=dict(changes))


def budgets() -> Call[accounts.BudgetsOut]:
    return Call("GET", "/v1/budgets", _BUDGETS)


def user_budgets(user_id: str) -> Call[accounts.BudgetsOut]:
    return Call("GET", f"/v1/users/{_segment(user_id)}/budgets", _BUDGETS)


def set_budget(
    user_id: str,
    currency: str,
    *,
    limit: str | int,
    warning: str | int | None = None,
    period: str | None = None,
) -> Call[accounts.BudgetOut]:
    body: dict[str, Any] = {"limit": str(limit)}
    if warning is not None:
        body["warning"] = str(warning)
    if period is not None:
        body["period"] = period
    path = f"/v1/users/{_segment(user_id)}/budgets/{_segment(currency)}"
    return Call("PUT", path, _BUDGET, json=body)


def delete_budget(user_id: str, currency: str) -> Call[accounts.BudgetsOut]:
    path = f"/v1/users/{_segment(user_id)}/budgets/{_segment(currency)}"
    return Call("DELETE", path, _BUDGETS)


# -- accounts (admin) ------------------------------------------------------------------------


def create_user(name: str) -> Call[schemas.User]:
    return Call("POST", "/v1/users", _USER, json={"name": name})


def list_users() -> Call[schemas.UserList]:
    return Call("GET", "/v1/users", _USERS)


def create_token(
    *, user_id: str | None = None, user_name: str | None = None, name: str | None = None
) -> Call[schemas.IssuedToken]:
    body = {k: v for k, v in (("user_id", user_id), ("user_name", user_name), ("name", name)) if v}
    return Call("POST", "/v1/tokens", _ISSUED, json=body)


def list_tokens() -> Call[schemas.TokenList]:
    return Call("GET", "/v1/tokens", _TOKENS)


def revoke_token(token_id: str) -> Call[schemas.Token]:
    return Call("DELETE", f"/v1/tokens/{_segment(token_id)}", _TOKEN)


# -- secrets and registry credentials ---------------------------------------------------------


def put_secret(name: str, value: str) -> Call[accounts.SecretOut]:
    return Call("PUT", f"/v1/secrets/{_segment(name)}", _SECRET, json={"value": value})


def list_secrets() -> Call[accounts.SecretList]:
    return Call("GET", "/v1/secrets", _SECRETS)


def delete_secret(name: str) -> Call[accounts.SecretOut]:
    return Call("DELETE", f"/v1/secrets/{_segment(name)}", _SECRET)


def put_registry_credential(
    registry: str, username: str, password: str
) -> Call[accounts.RegistryCredentialOut]:
    return Call(
        "PUT",
        f"/v1/registry-credentials/{_segment(registry)}",
        _CREDENTIAL,
        json={"username": username, "password": password},
    )


def list_registry_credentials() -> Call[accounts.RegistryCredentialList]:
    return Call("GET", "/v1/registry-credentials", _CREDENTIALS)


def delete_registry_credential(registry: str) -> Call[accounts.RegistryCredentialOut]:
    return Call("DELETE", f"/v1/registry-credentials/{_segment(registry)}", _CREDENTIAL)


# -- the gateway's routes (admin) --------------------------------------------------------------


def route_table(version: str | None = None, wait: float = 0) -> Call[schemas.RouteTable]:
    return Call("GET", "/v1/gateway/routes", _ROUTES, _params(version=version, wait=wait))
