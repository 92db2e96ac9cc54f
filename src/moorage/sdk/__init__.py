"""moorage's Python SDK: the public API as typed methods.

``Client`` and ``AsyncClient`` call a moorage server with one token and answer the
server's own response models, the ones its OpenAPI document is built from::

    from moorage import Client

    with Client("http://127.0.0.1:8080", token="...") as client:
        endpoint = client.create_endpoint({...})
        client.wait_until_available(endpoint.service_id, timeout=600)

Refusals raise ``ApiError`` with the server's ``code`` and ``message``. ``moorage``
re-exports everything in ``__all__`` here.
"""

from moorage.api.account_schemas import (
    BudgetOut as Budget,
)
from moorage.api.account_schemas import (
    BudgetsOut as BudgetList,
)
from moorage.api.account_schemas import (
    QuotaOut as Quota,
)
from moorage.api.account_schemas import (
    UsageOut as UsageReport,
)
from moorage.api.schemas import (
    Endpoint,
    EndpointEvent,
    EndpointPage,
    EventPage,
    Flavor,
    IssuedToken,
    Token,
    User,
)
from moorage.models.requests import CreateEndpointRequest, UpdateEndpointRequest
from moorage.sdk.async_client import AsyncClient
from moorage.sdk.client import Client
from moorage.sdk.config import config_path, read_config, remove_config, write_config
from moorage.sdk.errors import ApiError, MoorageError, WaitFailed, WaitTimeout
from moorage.sdk.target import Target, resolve_target
from moorage.sdk.waiting import Progress, describe, progress

__all__ = [
    "ApiError",
    "AsyncClient",
    "Budget",
    "BudgetList",
    "Client",
    "CreateEndpointRequest",
    "Endpoint",
    "EndpointEvent",
    "EndpointPage",
    "EventPage",
    "Flavor",
    "IssuedToken",
    "MoorageError",
    "Progress",
    "Quota",
    "Target",
    "Token",
    "UpdateEndpointRequest",
    "UsageReport",
    "User",
    "WaitFailed",
    "WaitTimeout",
    "config_path",
    "describe",
    "progress",
    "read_config",
    "remove_config",
    "resolve_target",
    "write_config",
]
