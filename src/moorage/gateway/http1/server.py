"""The listening side: accepts connections, keeps time, and asks a router where each
request goes.

One ticker (every quarter second) enforces every timeout: exchanges past their
idle or request timeout, client connections idle past keep-alive or slow to
send a request head or body (``WireLimits``), pooled replica connections idle
too long. A timer per request would cost more than
the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import time
from typing import Protocol

from moorage import refusals
from moorage.gateway.http1.client import LINGER_S, ClientConnection
from moorage.gateway.http1.connections import ConnectionCaps, ConnectionCounter, open_file_limit
from moorage.gateway.http1.exchange import Exchange
from moorage.gateway.http1.limits import WireLimits
from moorage.gateway.http1.upstream import UpstreamPool

TICK_S = 0.25


def raise_open_file_limit() -> int:
    """Lifts the soft limit on open files to the hard one, as nginx's
    ``worker_rlimit_nofile`` does: each proxied stream holds two sockets, and the usual
    soft default of 1024 would refuse connections past about 500 streams. Returns the
    limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return soft


def freeze_startup_heap() -> None:
    """Moves everything allocated so far (modules, the app) out of the garbage collector's
    sight. Otherwise each full collection walks those objects again, a pause of several
    milliseconds that shows in the gateway's p99 (see docs/performance.md)."""
    gc.collect()
    gc.freeze()


class Router(Protocol):
    def route(self, exchange: Exchange) -> None:
        """Answers the request or forwards it (``Exchange.respond``/``forward``)."""

    def upstream_failed(self, exchange: Exchange, error: Exception | None) -> None:
        """The replica closed or refused before answering: retry, or answer 502."""

    def finished(self, exchange: Exchange) -> None:
        """The exchange is over, however it ended: count it."""


class ProxyServer:
    def __init__(
        self,
        router: Router,
        keepalive_timeout_s: float = 75.0,
        limits: WireLimits | None = None,
    ) -> None:
        self.router = router
        self.limits = limits or WireLimits()
        self.pool = UpstreamPool(max_head_bytes=self.limits.max_head_bytes)
        self.keepalive_timeout_s = keepalive_timeout_s
        self.connections: set[ClientConnection] = set()
        self.timed: set[Exchange] = set()
        self._servers: list[asyncio.Server] = []
        self._ticker: asyncio.Task[None] | None = None
        self.now = time.monotonic
        # Set when the first listener opens, after the open-file limit was raised.
        self.counter: ConnectionCounter | None = None

    async def listen(self, host: str, port: int, *, reuse_port: bool = False) -> asyncio.Server:
        if self.counter is None:
            limits = self.limits
            self.counter = ConnectionCounter(
                ConnectionCaps.resolve(
                    limits.max_connections, limits.max_connections_per_client, open_file_limit()
                )
            )
        server = await asyncio.get_running_loop().create_server(
            lambda: ClientConnection(self),
            host,
            port,
            reuse_port=reuse_port or None,
            backlog=4096,
        )
        self._servers.append(server)
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick())
        return server

    async def close(self, grace_s: float = 5.0) -> None:
        """Stops accepting, lets requests in progress finish for up to ``grace_s``."""
        for server in self._servers:
            server.close()
        deadline = self.now() + grace_s
        while any(c.current is not None for c in self.connections) and self.now() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self.pool.close_idle(self.now(), all_of_them=True)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = self.now()
            for exchange in list(self.timed):
                if exchange.deadline is not None and now > exchange.deadline:
                    exchange.timed_out("request")
                elif (
                    exchange.idle_timeout_s is not None
                    and now - exchange.last_activity > exchange.idle_timeout_s
                ):
                    exchange.timed_out("idle")
            header_timeout_s = self.limits.header_timeout_s
            body_timeout_s = self.limits.body_timeout_s
            for connection in list(self.connections):
                current = connection.current
                if connection.lingering:
                    if now - connection.idle_since > LINGER_S:
                        connection.close()
                elif connection.heading:
                    if not connection.head_seen:
                        connection.head_seen = now
                    elif now - connection.head_seen > header_timeout_s:
                        connection.timed_out_head()
                elif current is None:
                    if now - connection.idle_since > self.keepalive_timeout_s:
                        connection.close()
                elif current.body_deadline is not None and current.body_overdue(now):
                    current.body_timed_out(
                        refusals.api_body_deadline(self.limits.api_body_timeout_s)
                    )
                elif (
                    connection.tunnel is None
                    and not connection.pending
                    and not connection.paused()
                    and current.body_stalled(now, body_timeout_s)
                ):
                    current.body_timed_out()
            self.pool.close_idle(now)
