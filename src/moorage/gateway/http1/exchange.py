"""One request and its response, carried between a client connection and a replica's.

The exchange is driven by callbacks from both connections. What to do when a
replica cannot be reached (retry elsewhere, or answer 502) is the router's
decision; the exchange only reports what happened and whether the request had
reached the replica.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from moorage import refusals
from moorage.errors import MoorageError
from moorage.gateway.http1 import wire
from moorage.gateway.http1.request import BUFFER_LIMIT, FRAMING, Request

if TYPE_CHECKING:
    from moorage.gateway.dispatch import Lease
    from moorage.gateway.http1.client import ClientConnection
    from moorage.gateway.http1.upstream import UpstreamConnection
    from moorage.routing.table import EndpointRoute

_BODYLESS_STATUS = frozenset({204, 304})
API_BODY_SETTING = "MOORAGE_API_MAX_BODY_BYTES"
BODY_SETTING = "MOORAGE_GATEWAY_MAX_BODY_BYTES"


class Exchange:
    __slots__ = (
        "_body",
        "_body_size",
        "_body_total",
        "_chunked_out",
        "_close_delimited",
        "_continue_sent",
        "_held_head",
        "_held_request",
        "_replay",
        "_replay_size",
        "_tunnel_buffer",
        "address",
        "body_deadline",
        "body_limit",
        "client",
        "deadline",
        "finished",
        "head",
        "head_sent",
        "idle_timeout_s",
        "keep_client",
        "last_activity",
        "lease",
        "note",
        "path",
        "reached",
        "request",
        "request_done",
        "retries_left",
        "route",
        "server",
        "started",
        "status",
        "task",
        "tried",
        "upgraded",
        "upstream",
        "upstream_paused",
    )

    def __init__(self, client: ClientConnection, request: Request) -> None:
        self.client = client
        self.server = client.server
        self.request = request
        self.started = self.last_activity = self.server.now()
        self.request_done = not request.has_body and not request.upgrade
        self.upstream: UpstreamConnection | None = None
        self.address = ""
        self.head = b""
        self.path = b"/"  # the target on the replica, set by the router
        self.lease: Lease | None = None
        self.route: EndpointRoute | None = None
        self.tried: frozenset[str] = frozenset()
        self.retries_left = 0
        self.task: asyncio.Future[Any] | None = None
        self.status = 0
        self.note = ""  # why the gateway answered itself, for metrics
        self.head_sent = self.finished = self.reached = False
        self.upgraded = self.upstream_paused = False
        self.keep_client = request.keep_alive and not request.upgrade
        self.idle_timeout_s: float | None = None
        self.deadline: float | None = None
        self.body_deadline: float | None = None  # when the whole body must be in (API)
        self._body: list[bytes] = []
        self._body_size = 0
        self._body_total = 0  # every body byte read, against ``body_limit``
        limits = self.server.limits
        self.body_limit = limits.max_body_bytes  # the router sets the API's
        # A copy of the body for a replay, within the retry buffer (past it: no replay).
        self._replay: list[bytes] | None = (
            []
            if request.replayable and request.content_length <= limits.retry_buffer_bytes
            else None
        )
        self._replay_size = 0
        self._tunnel_buffer: list[bytes] = []
        self._chunked_out = self._close_delimited = self._continue_sent = False
        # The response head waits for the body bytes parsed from the same read, so that
        # a small response leaves in one write (``flush_head`` ends the wait).
        self._held_head = b""
        # Likewise, request bytes parsed from one read of the client leave in one write.
        self._held_request: list[bytes] = []

    # -- decisions from the router ---------------------------------------------------

    def respond(self, data: bytes, status: int, close: bool = False) -> None:
        """Answers from the gateway itself (an error, a health check)."""
        if self.finished:
            return
        self.status = status
        if not self.request_done:  # the body was not read: the connection cannot go on
            close = True
        self.client.write(data)
        self.head_sent = True
        self._finish(keep_alive=not close)

    def refuse(self, error: MoorageError) -> None:
        """Answers with one of moorage's errors (``moorage.refusals``), its
        ``Retry-After`` included."""
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if error.retry_after_s is not None:
            headers = ((b"retry-after", b"%d" % round(error.retry_after_s)),)
        self.respond_error(error.status_code, error.code, error.message, headers)

    def respond_error(
        self,
        status: int,
        code: str,
        message: str,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.note = code
        close = not self.keep_client or not self.request_done
        self.respond(
            wire.error_response(
                status,
                code,
                message,
                close=close,
                headers=headers,
                head_only=self.request.method == b"HEAD",
            ),
            status,
            close,
        )

    def forward(
        self,
        address: str,
        head: bytes,
        idle_timeout_s: float | None = None,
        request_timeout_s: float | None = None,
    ) -> None:
        """Sends the request to ``address``, on a pooled connection when there is one."""
        self.address = address
        self.head = head
        self.idle_timeout_s = idle_timeout_s
        if request_timeout_s is not None:
            self.deadline = self.started + request_timeout_s
        if idle_timeout_s is not None or request_timeout_s is not None:
            self.server.timed.add(self)
        connection = self.server.pool.take_idle(address)
        if connection is not None:
            self._attach(connection)
        else:
            self.task = asyncio.ensure_future(self._open())

    @property
    def replayable(self) -> bool:
        """May be sent again after it reached a replica: the request allows it and its
        body (if any) is still held whole."""
        return self._replay is not None

    def body_limit_setting(self) -> str:
        return BODY_SETTING if self.route is not None else API_BODY_SETTING

    def prepare_retry(self) -> None:
        """Forgets the failed attempt; a replayed body goes out again from the copy."""
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        if self.reached and self._replay is not None:
            self._body = list(self._replay)
        self.reached = False

    async def _open(self) -> None:
        try:
            connection = await self.server.pool.open(self.address)
        except (OSError, TimeoutError) as exc:
            self.task = None
            if not self.finished:
                self.server.router.upstream_failed(self, exc)
            return
        self.task = None
        if self.finished:
            self.server.pool.put_back(connection, self.server.now())
            return
        self._attach(connection)

    def _attach(self, connection: UpstreamConnection) -> None:
        self.upstream = connection
        connection.exchange = self
        request = self.request
        held = self._held_request
        held.append(self.head)
        if request.chunked:
            held += map(wire.chunk, self._body)
            if self.request_done:
                held.append(wire.LAST_CHUNK)
        else:
            held += self._body
        if not self.client.reading:
            self.flush_request()
        self.reached = True
        self._body = []
        self._body_size = 0
        if self.client.write_paused:  # an earlier response still fills the client's buffer
            self.client_backpressure(paused=True)
        self.client.resume_reading_for(request)
        if request.expect_continue and not self.request_done and not self._continue_sent:
            self._continue_sent = True
            self.client.write(wire.CONTINUE)

    # -- events from the client ------------------------------------------------------

    def client_body(self, data: bytes) -> None:
        if self.finished:
            return
        self.last_activity = self.server.now()
        self._body_total += len(data)
        if self._body_total > self.body_limit:
            self._body_too_large()
            return
        if self._replay is not None:
            self._replay_size += len(data)
            if self._replay_size > self.server.limits.retry_buffer_bytes:
                self._replay = None  # too big to hold: this request will not be replayed
            else:
                self._replay.append(data)
        if self.upstream is not None:
            self._held_request.append(wire.chunk(data) if self.request.chunked else data)
            return
        self._body.append(data)
        self._body_size += len(data)
        if self._body_size > BUFFER_LIMIT:
            self.client.pause_reading_for(self.request)

    def _body_too_large(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:  # it has part of a body it must not act on
            upstream.abort()
        if self.head_sent:
            self.note = "body_too_large"
            self.client.abort()
            self._finish(keep_alive=False)
        else:
            self.refuse(refusals.body_too_large(self.body_limit, self.body_limit_setting()))

    def body_stalled(self, now: float, limit_s: float) -> bool:
        """The client stopped sending a body the gateway is ready to read (not waiting
        for a replica, a ``100 Continue``, or a tunnel)."""
        return (
            not self.request_done
            and not self.finished
            and not self.request.upgrade
            and (self._continue_sent or not self.request.expect_continue)
            and now - self.last_activity > limit_s
        )

    def body_overdue(self, now: float) -> bool:
        """The body is not in whole by its deadline (``body_deadline``, API requests)."""
        deadline = self.body_deadline
        return (
            deadline is not None and now > deadline and not self.request_done and not self.finished
        )

    def body_timed_out(self, error: MoorageError | None = None) -> None:
        """Answers 408 (``error``, or the pause limit's) unless the response began."""
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.abort()
        if self.head_sent:
            self.note = "body_timeout"
            self.client.abort()
            self._finish(keep_alive=False)
        else:
            self.refuse(error or refusals.body_timeout(self.server.limits.body_timeout_s))

    def client_body_done(self) -> None:
        self.request_done = True
        if self.upstream is not None and self.request.chunked and not self.finished:
            self._held_request.append(wire.LAST_CHUNK)

    def flush_request(self) -> None:
        """Sends the request bytes held while the client's read was parsed."""
        held = self._held_request
        if held and self.upstream is not None:
            self.upstream.write(held[0] if len(held) == 1 else b"".join(held))
        held.clear()

    def client_tunnel_data(self, data: bytes) -> None:
        if not data:
            return
        self.last_activity = self.server.now()
        if self.upgraded and self.upstream is not None:
            self.upstream.write(data)
        else:
            self._tunnel_buffer.append(data)

    def client_backpressure(self, paused: bool) -> None:
        upstream = self.upstream
        if upstream is None or upstream.transport is None:
            return
        self.upstream_paused = paused
        if paused:
            upstream.transport.pause_reading()
        else:
            upstream.transport.resume_reading()

    def client_lost(self) -> None:
        if self.finished:
            return
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.abort()  # the replica may still be answering: this socket is spent
        self.note = self.note or "client_closed"
        self._finish(keep_alive=False)

    # -- events from the replica -----------------------------------------------------

    def upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if self.finished:
            return
        request = self.request
        self.last_activity = self.server.now()
        if status < 200 and status != 101:  # 103 Early Hints and the like go through
            if not request.http10:
                self.client.write(
                    b"".join(
                        [wire.status_line(status), *(b"%b: %b\r\n" % h for h in headers), b"\r\n"]
                    )
                )
            return
        if status == 101 and not request.upgrade:
            self._bad_response("switched protocols (101) without being asked to upgrade")
            return
        self.status = status
        parts = [wire.status_line(status)]
        has_length = chunked_in = False
        if status == 101:
            parts += [b"%b: %b\r\n" % h for h in headers]
        else:
            dropped: frozenset[bytes] = frozenset()
            kept: list[tuple[bytes, bytes, bytes]] = []
            for name, value in headers:
                lower = name.lower()
                if lower in wire.HOP_BY_HOP:
                    if lower == b"connection":
                        dropped |= wire.connection_tokens(value)
                    elif lower == b"transfer-encoding":
                        chunked_in = True
                    continue
                if lower == b"content-length":
                    # Sent on as the number the parser framed the body by, padding gone.
                    value = value.strip(b" \t")
                    if not value.isdigit():
                        self._bad_response("sent a Content-Length that is not a number")
                        return
                    has_length = True
                kept.append((lower, name, value))
            if dropped and not dropped.isdisjoint(FRAMING):
                self._bad_response("named a framing header in Connection")
                return
            for lower, name, value in kept:
                if lower not in dropped:
                    parts += [name, b": ", value, b"\r\n"]
        bodyless = request.method == b"HEAD" or status in _BODYLESS_STATUS
        if status != 101 and not bodyless and not has_length:
            if request.http10:
                self.keep_client = False
            else:
                self._chunked_out = True
                parts.append(b"transfer-encoding: chunked\r\n")
        if status == 101:
            pass  # the replica's "Connection: upgrade" stands; a "close" beside it breaks clients
        elif not self.keep_client:
            parts.append(b"connection: close\r\n")
        elif request.http10:
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self._held_head = b"".join(parts)
        self.head_sent = True
        self._close_delimited = not (has_length or chunked_in or bodyless) and status != 101
        if request.method == b"HEAD":  # no body follows, whatever the headers say
            self._response_complete(reuse=False)

    def _bad_response(self, what: str) -> None:
        """A response the gateway will not pass on: its framing could make the client
        read part of it as another response. The replica's connection is spent."""
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.abort()
        route = self.route
        name = f"endpoint {route.service_id}'s replica" if route is not None else "the API"
        self.refuse(refusals.bad_response(name, what))

    def upstream_body(self, data: bytes) -> None:
        if self.finished:
            return
        self.last_activity = self.server.now()
        out = wire.chunk(data) if self._chunked_out else data
        if self._held_head:
            out = self._held_head + out
            self._held_head = b""
        self.client.write(out)

    def flush_head(self) -> None:
        """Sends a response head still held back (its body did not come with it)."""
        if self._held_head:
            self.client.write(self._held_head)
            self._held_head = b""

    def upstream_complete(self, upstream_keep_alive: bool) -> None:
        if self.finished or not self.head_sent or self.status == 101:
            return  # an informational response, or the upgrade itself
        self._response_complete(reuse=upstream_keep_alive and self.request_done)

    def upstream_upgraded(self, rest: bytes) -> None:
        if self.finished or self.status != 101 or self.upstream is None:
            if self.upstream is not None:
                self.upstream.close()
            return
        self.upgraded = True
        self.flush_head()
        if rest:
            self.client.write(rest)
        upstream = self.upstream
        for piece in self._tunnel_buffer:
            upstream.write(piece)
        self._tunnel_buffer = []

    def upstream_tunnel_data(self, data: bytes) -> None:
        self.last_activity = self.server.now()
        self.client.write(data)

    def upstream_lost(self, exc: Exception | None) -> None:
        self.upstream = None
        if self.finished:
            return
        if self.upgraded:
            self.client.close()
            self._finish(keep_alive=False)
        elif not self.head_sent:
            self.server.router.upstream_failed(self, exc)
        elif self._close_delimited and exc is None:  # the close is the end of the body
            self._response_complete(reuse=False)
        else:  # cut mid-body: the client must see a truncated response, not a whole one
            self.client.abort()
            self._finish(keep_alive=False)

    def upstream_malformed(self, error: Exception) -> None:
        """The replica's response is not valid HTTP/1.1 (ambiguous framing included)."""
        if self.head_sent or self.upgraded:
            self.upstream_lost(error)  # the client sees a cut response, never a whole one
        else:
            self._bad_response(f"not valid HTTP/1.1: {error}")

    def timed_out(self, what: str) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.abort()
        if self.head_sent:
            self.note = f"{what}_timeout"
            self.client.abort()
            self._finish(keep_alive=False)
        else:
            self.refuse(refusals.replica_timeout(what))

    # -- ending ----------------------------------------------------------------------

    def _response_complete(self, reuse: bool) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            if self.upstream_paused and upstream.transport is not None:
                upstream.transport.resume_reading()
            if reuse:
                self.server.pool.put_back(upstream, self.server.now())
            else:
                upstream.close()
        if self._chunked_out:
            self._held_head += wire.LAST_CHUNK
        self.flush_head()
        self._finish(keep_alive=True)

    def _finish(self, keep_alive: bool) -> None:
        self.finished = True
        if self.lease is not None:
            self.lease.release()
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.server.timed.discard(self)
        self.client.resume_reading_for(self.request)
        self.server.router.finished(self)
        self.client.exchange_finished(self, keep_alive and self.keep_client)
