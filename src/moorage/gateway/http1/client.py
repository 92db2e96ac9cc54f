"""The client side: one protocol per accepted connection, parsing requests with httptools.

Requests on a connection are answered in order. A pipelined request that
arrives while an earlier one is in progress is parsed and held (reading pauses)
until its turn.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from moorage.gateway.http1 import wire
from moorage.gateway.http1.exchange import Exchange
from moorage.gateway.http1.request import Request

if TYPE_CHECKING:
    from moorage.gateway.http1.server import ProxyServer


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "_pausers",
        "_request",
        "current",
        "idle_since",
        "parser",
        "peer",
        "pending",
        "reading",
        "server",
        "transport",
        "tunnel",
        "write_paused",
    )

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = b""
        self.current: Exchange | None = None
        self.pending: deque[Exchange] = deque()
        self.tunnel: Exchange | None = None
        self.reading = False  # inside data_received: request bytes are held, then flushed
        self.write_paused = False  # our send buffer is full: replicas must wait
        self.idle_since = server.now()
        self._request = Request()
        self._pausers: set[object] = set()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self.peer = peer[0].encode() if isinstance(peer, tuple) else b"local"
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.client_tunnel_data(data)
            return
        self.reading = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            exchange = self._parsing()
            if exchange is not None and exchange.request.upgrade:
                self.tunnel = exchange
                exchange.client_tunnel_data(data[upgrade.args[0] :])
        except httptools.HttpParserError as exc:
            self._malformed(exc)
        finally:
            self.reading = False
        if self.current is not None:  # only the current exchange has a replica to write to
            self.current.flush_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        for exchange in (self.current, *self.pending):
            if exchange is not None:
                exchange.client_lost()
        self.current = None
        self.pending.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.current is not None:
            self.current.client_backpressure(paused=True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.current is not None:
            self.current.client_backpressure(paused=False)

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self._request = Request()

    def on_url(self, url: bytes) -> None:
        self._request.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._request.add_header(name, value)

    def on_headers_complete(self) -> None:
        request = self._request
        parser = self.parser
        request.method = parser.get_method()
        request.keep_alive = parser.should_keep_alive()
        request.http10 = parser.get_http_version() == "1.0"
        request.upgrade = request.upgrade and parser.should_upgrade()
        exchange = Exchange(self, request)
        if self.current is None:
            self.current = exchange
            self.server.router.route(exchange)
        else:
            self.pending.append(exchange)
            self.pause_reading_for(self)

    def on_body(self, body: bytes) -> None:
        exchange = self._parsing()
        if exchange is not None:
            exchange.client_body(body)

    def on_message_complete(self) -> None:
        exchange = self._parsing()
        if exchange is not None:
            exchange.client_body_done()

    def _parsing(self) -> Exchange | None:
        """The exchange whose request the parser is reading: the newest one."""
        return self.pending[-1] if self.pending else self.current

    # -- used by exchanges -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause_reading_for(self, reason: object) -> None:
        if not self._pausers and self.transport is not None:
            self.transport.pause_reading()
        self._pausers.add(reason)

    def resume_reading_for(self, reason: object) -> None:
        if reason in self._pausers:
            self._pausers.discard(reason)
            if not self._pausers and self.transport is not None:
                self.transport.resume_reading()

    def exchange_finished(self, exchange: Exchange, keep_alive: bool) -> None:
        """The response is complete: start the next request, or close."""
        if exchange is not self.current:
            return
        self.current = None
        self.resume_reading_for(exchange)
        if self.tunnel is exchange:
            self.tunnel = None
            keep_alive = False
        if not keep_alive or self.transport is None or self.transport.is_closing():
            self.close()
            return
        self.idle_since = self.server.now()
        if self.pending:
            self.current = self.pending.popleft()
            if not self.pending:
                self.resume_reading_for(self)
            self.server.router.route(self.current)

    def _malformed(self, exc: Exception) -> None:
        if self.current is None and self.transport is not None:
            self.write(
                wire.error_response(
                    400,
                    "bad_request",
                    f"the request is not valid HTTP/1.1 ({exc}); check the client",
                    close=True,
                )
            )
        elif self.current is not None:
            self.current.client_lost()
        self.close()
