"""Connections to replicas, kept alive and reused across requests.

A pooled connection whose replica closed it leaves the pool the moment the
close is seen (``connection_lost``). The race that remains, a replica closing an
idle connection just as a request is written to it, would fail that request with
a 502 (a request that may have reached a replica is not sent again), so idle
connections are closed here first: after ``MAX_IDLE_S``, shorter than common
servers' keep-alive timeouts (gunicorn 2 s, uvicorn and Node 5 s).

A replica's response head is counted as it arrives, before the parser sees it (the
parser joins a header's pieces itself, which costs quadratic time on a head sent in
small pieces): past ``max_head_bytes`` the response is refused with a 502.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

from moorage.gateway.http1.headroom import feed_bounded

if TYPE_CHECKING:
    from moorage.gateway.http1.exchange import Exchange

MAX_IDLE_S = 1.5


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_headers",
        "address",
        "exchange",
        "head_room",
        "idle_since",
        "in_body",
        "parser",
        "pool",
        "transport",
        "tunnel",
    )

    def __init__(self, pool: UpstreamPool, address: str) -> None:
        self.pool = pool
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.tunnel = False
        self.idle_since = 0.0
        self._headers: list[tuple[bytes, bytes]] = []
        self.in_body = False  # the parser is past a head: reads are body bytes
        self.head_room = pool.max_head_bytes  # bytes the current head may still take

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # an idle connection should say nothing: drop it
            self.close()
            return
        if self.tunnel:
            exchange.upstream_tunnel_data(data)
            return
        try:
            if self.in_body:
                self.parser.feed_data(data)
            elif len(data) <= self.head_room:
                self.head_room -= len(data)
                self.parser.feed_data(data)
            else:
                feed_bounded(self, data)
            exchange.flush_head()
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0]
            if self.exchange is not None:
                self.tunnel = True
                self.exchange.upstream_upgraded(data[offset:])
        except httptools.HttpParserError as exc:
            if self.exchange is not None:
                self.exchange.upstream_malformed(exc)
            self.close()

    def head_too_long(self) -> Exception:
        return httptools.HttpParserError(
            f"a response head longer than {self.pool.max_head_bytes} bytes"
        )

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.upstream_lost(exc)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.pause_reading_for(self.exchange)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.resume_reading_for(self.exchange)

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_body = True
        if self.exchange is not None:
            self.exchange.upstream_head(self.parser.get_status_code(), self._headers)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.upstream_body(body)

    def on_message_complete(self) -> None:
        self.in_body = False  # the next response (after a 1xx, or on reuse) has a head
        self.head_room = self.pool.max_head_bytes
        if self.exchange is not None:
            self.exchange.upstream_complete(self.parser.should_keep_alive())

    # -- used by the exchange --------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        self.exchange = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.exchange = None
        if self.transport is not None:
            self.transport.abort()


class UpstreamPool:
    """Idle keep-alive connections per replica address (``host:port``, ``unix:/path``)."""

    def __init__(
        self,
        connect_timeout_s: float = 5.0,
        max_idle_s: float = MAX_IDLE_S,
        max_head_bytes: int = 64 * 1024,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.max_idle_s = max_idle_s
        self.max_head_bytes = max_head_bytes
        self._idle: dict[str, list[UpstreamConnection]] = {}

    def take_idle(self, address: str) -> UpstreamConnection | None:
        idle = self._idle.get(address)
        while idle:
            connection = idle.pop()
            if connection.transport is not None and not connection.transport.is_closing():
                return connection
        return None

    async def open(self, address: str) -> UpstreamConnection:
        """Connects to ``host:port``, ``[v6]:port`` or ``unix:/absolute/path`` (the API's
        private socket, a sandboxed replica's)."""
        loop = asyncio.get_running_loop()
        if address.startswith("unix:"):
            connecting = loop.create_unix_connection(
                lambda: UpstreamConnection(self, address), address[len("unix:") :]
            )
        else:
            host, _, port = address.rpartition(":")
            host = host.strip("[]")  # "[::1]:8000": an IPv6 literal
            connecting = loop.create_connection(
                lambda: UpstreamConnection(self, address), host, int(port)
            )
        _, protocol = await asyncio.wait_for(connecting, self.connect_timeout_s)
        return protocol

    def put_back(self, connection: UpstreamConnection, now: float) -> None:
        connection.exchange = None
        transport = connection.transport
        if transport is None or transport.is_closing():
            return
        connection.idle_since = now
        self._idle.setdefault(connection.address, []).append(connection)

    def forget(self, connection: UpstreamConnection) -> None:
        idle = self._idle.get(connection.address)
        if idle and connection in idle:
            idle.remove(connection)

    def close_idle(self, now: float, all_of_them: bool = False) -> None:
        """Closes connections idle past ``max_idle_s`` (or all): replicas that went away
        must not keep sockets open here."""
        for address, idle in list(self._idle.items()):
            keep = []
            for connection in idle:
                if not all_of_them and now - connection.idle_since < self.max_idle_s:
                    keep.append(connection)
                else:
                    connection.close()
            if keep:
                self._idle[address] = keep
            else:
                del self._idle[address]
