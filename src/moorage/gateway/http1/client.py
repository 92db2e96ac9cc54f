"""The client side: one protocol per accepted connection, parsing requests with httptools.

Requests on a connection are answered in order. A pipelined request that
arrives while an earlier one is in progress is parsed and held (reading pauses)
until its turn.

Limits are counted as bytes arrive, never after the parser built a string: the bytes
of a request head are counted before they are fed to the parser (which joins a
header's pieces itself), so a huge head is refused after ``max_head_bytes``, in
linear time. On the common path that costs one comparison per read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from moorage import refusals
from moorage.errors import BadRequest, MoorageError
from moorage.gateway.http1 import wire
from moorage.gateway.http1.exchange import Exchange
from moorage.gateway.http1.headroom import feed_bounded
from moorage.gateway.http1.limits import Refused
from moorage.gateway.http1.request import Request

# After a refusal with request bytes still coming, the connection reads and drops them
# for a while before closing: closing with unread data would reset the connection and
# could destroy the answer before the client reads it.
LINGER_S = 2.0
LINGER_BYTES = 4 << 20

if TYPE_CHECKING:
    from moorage.gateway.http1.server import ProxyServer


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "_pausers",
        "_request",
        "admitted",
        "current",
        "head_room",
        "head_seen",
        "heading",
        "idle_since",
        "in_body",
        "limits",
        "lingering",
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
        self.limits = server.limits
        # Bytes the current request head may still take (counted before parsing).
        self.head_room = self.limits.max_head_bytes
        self.in_body = False  # the parser is past a head: reads are body bytes
        self.heading = False  # a head began and is not complete (for the header timeout)
        self.head_seen = 0.0  # when the ticker first saw this head in progress
        self.lingering = 0  # > 0: refused, dropping up to this many more bytes
        self.admitted = False  # counted against the connection caps

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self.peer = peer[0].encode() if isinstance(peer, tuple) else b"local"
        counter = self.server.counter
        refusal = counter.admit(self.peer, self.server.now()) if counter is not None else None
        if refusal is not None:
            # Past a connection cap: a short answer and the socket closed at once, so the
            # open file is given back; anything it sends meanwhile is dropped.
            self.lingering = LINGER_BYTES
            self.transport.write(
                wire.error_response(
                    refusal.status_code,
                    refusal.code,
                    refusal.message,
                    close=True,
                    headers=((b"retry-after", b"%d" % (refusal.retry_after_s or 1)),),
                )
            )
            self.transport.close()
            return
        self.admitted = True
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.client_tunnel_data(data)
            return
        if self.lingering:
            self._drop(len(data))
            return
        self.reading = True
        try:
            if self.in_body:
                self.parser.feed_data(data)
            elif len(data) <= self.head_room:
                self.head_room -= len(data)
                self.parser.feed_data(data)
            else:
                feed_bounded(self, data)
        except httptools.HttpParserUpgrade as upgrade:
            exchange = self._parsing()
            if exchange is not None and exchange.request.upgrade:
                self.tunnel = exchange
                exchange.client_tunnel_data(data[upgrade.args[0] :])
        except httptools.HttpParserError as exc:
            refused = exc.__context__
            if isinstance(refused, Refused):
                self.refuse(refused.error)
            else:
                self.refuse(refusals.not_http(str(exc)))
        except Refused as refused:
            self.refuse(refused.error)
        finally:
            self.reading = False
        if self.current is not None:  # only the current exchange has a replica to write to
            self.current.flush_request()

    def head_too_long(self) -> Exception:
        return Refused(refusals.headers_too_large(self.limits.max_head_bytes))

    def _drop(self, size: int) -> None:
        self.lingering -= size
        if self.lingering <= 0:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.admitted = False
            self.server.connections.discard(self)
            if self.server.counter is not None:
                self.server.counter.release(self.peer)
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
        self.heading = True

    def on_url(self, url: bytes) -> None:
        target = self._request.target
        if len(target) + len(url) > self.limits.max_url_bytes:
            raise Refused(refusals.url_too_long(self.limits.max_url_bytes))
        # Usually one piece; more are joined under the small URL limit.
        self._request.target = target + url if target else url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > self.limits.max_header_bytes:
            raise Refused(refusals.header_too_large(self.limits.max_header_bytes))
        self._request.add_header(name, value)

    def on_headers_complete(self) -> None:
        request = self._request
        parser = self.parser
        self.in_body = True
        self.heading = False
        self.head_seen = 0.0
        request.method = parser.get_method()
        request.keep_alive = parser.should_keep_alive()
        request.http10 = parser.get_http_version() == "1.0"
        request.upgrade = request.upgrade and parser.should_upgrade()
        if request.problem or not (request.host_given or request.http10):
            raise Refused(
                BadRequest(request.problem or "send a Host header: HTTP/1.1 requires exactly one")
            )
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
        self.in_body = False
        self.head_room = self.limits.max_head_bytes
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

    def paused(self) -> bool:
        """Reading is paused by the gateway (a replica slow to take the body, a request
        waiting its turn): a silent client is then not to blame."""
        return bool(self._pausers)

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
            if exchange.request_done:
                self.close()
            else:  # refused before its body was read: the client may still be sending it
                self.linger()
            return
        self.idle_since = self.server.now()
        if self.pending:
            self.current = self.pending.popleft()
            if not self.pending:
                self.resume_reading_for(self)
            self.server.router.route(self.current)

    def refuse(self, error: MoorageError) -> None:
        """Answers a request that cannot be parsed on, or breaks a limit, and ends the
        connection: what follows on it cannot be trusted to start a request."""
        if self.current is None and self.transport is not None:
            self.write(
                wire.error_response(error.status_code, error.code, error.message, close=True)
            )
        elif self.current is not None:
            self.current.client_lost()
        self.linger()

    def linger(self) -> None:
        """Stops reading requests; drops what the client still sends for up to
        ``LINGER_S`` (or ``LINGER_BYTES``), then closes (see ``LINGER_S``)."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.lingering:
            return
        self.lingering = LINGER_BYTES
        self.idle_since = self.server.now()
        with contextlib.suppress(OSError, RuntimeError, NotImplementedError):
            transport.write_eof()
        if self._pausers:
            self._pausers.clear()
            transport.resume_reading()

    def timed_out_head(self) -> None:
        """The ticker's verdict: a request head started and did not end in time."""
        self.refuse(refusals.header_timeout(self.limits.header_timeout_s))
