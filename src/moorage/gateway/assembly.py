"""The gateway put together in one place, for ``moorage serve`` and ``moorage gateway``.

Both serve from a route holder through the same dispatcher, metrics, router and
front door; they differ only in what stands behind the door. ``moorage serve``
forwards what is not inference traffic to its API (``api_address``);
a standalone gateway answers a few paths itself (``local``, given the
gateway's metrics to serve).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from moorage.gateway.dispatch import Dispatcher
from moorage.gateway.http1.limits import WireLimits
from moorage.gateway.http1.server import ProxyServer
from moorage.gateway.metrics import GatewayMetrics
from moorage.gateway.router import GatewayRouter, LocalHandler
from moorage.routing.holder import RouteTableHolder
from moorage.settings import Settings


@dataclass(frozen=True)
class Gateway:
    routes: RouteTableHolder
    dispatcher: Dispatcher
    metrics: GatewayMetrics
    proxy: ProxyServer
    router: GatewayRouter


def build_gateway(
    routes: RouteTableHolder,
    limits: WireLimits,
    *,
    api_address: str | None = None,
    local: Callable[[GatewayMetrics], Mapping[bytes, LocalHandler]] | None = None,
    serves_inference: bool = True,
) -> Gateway:
    """A gateway serving ``routes``; nothing listens until ``proxy.listen``."""
    dispatcher = Dispatcher.following(routes)
    metrics = GatewayMetrics(dispatcher)
    router = GatewayRouter(
        routes,
        dispatcher,
        metrics,
        api_address=api_address,
        local=dict(local(metrics)) if local is not None else None,
        serves_inference=serves_inference,
    )
    return Gateway(routes, dispatcher, metrics, ProxyServer(router, limits=limits), router)


def wire_limits(settings: Settings) -> WireLimits:
    """The front door's limits as ``moorage serve``'s settings give them."""
    return WireLimits(
        max_url_bytes=settings.gateway_max_url_bytes,
        max_header_bytes=settings.gateway_max_header_bytes,
        max_head_bytes=settings.gateway_max_head_bytes,
        max_body_bytes=settings.gateway_max_body_bytes,
        api_max_body_bytes=settings.api_max_body_bytes,
        retry_buffer_bytes=settings.gateway_retry_buffer_bytes,
        header_timeout_s=settings.gateway_header_timeout_s,
        body_timeout_s=settings.gateway_body_timeout_s,
        api_body_timeout_s=settings.api_body_timeout_s,
        max_connections=settings.gateway_max_connections,
        max_connections_per_client=settings.gateway_max_connections_per_client,
    )
