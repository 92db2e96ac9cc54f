"""moorage: dedicated inference endpoints on your own machines.

``from moorage import Client`` is the Python SDK (``moorage.sdk``): its names are
loaded on first use, so that the server's modules, which import this package, do not
load the client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from moorage.sdk import (
        ApiError,
        AsyncClient,
        Budget,
        BudgetList,
        Client,
        CreateEndpointRequest,
        Endpoint,
        EndpointEvent,
        EndpointPage,
        EventPage,
        Flavor,
        IssuedToken,
        MoorageError,
        Quota,
        Token,
        UpdateEndpointRequest,
        UsageReport,
        User,
        WaitFailed,
        WaitTimeout,
    )

# What ``import moorage`` offers: the SDK's client, errors and models.
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
    "Quota",
    "Token",
    "UpdateEndpointRequest",
    "UsageReport",
    "User",
    "WaitFailed",
    "WaitTimeout",
    "__version__",
]
_SDK = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _SDK:
        return getattr(importlib.import_module("moorage.sdk"), name)
    raise AttributeError(f"module 'moorage' has no attribute {name!r}")
