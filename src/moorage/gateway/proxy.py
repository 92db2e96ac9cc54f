"""The gateway's ASGI app: ``/inference-api/v1/inference_service/{id}[/{path}]``.

Bodies stream both ways (an SSE response reaches the client event by event);
the caller's moorage token is checked against the route table (no store access
on this path) and never forwarded to the replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator

import aiohttp
from multidict import CIMultiDict
from starlette.types import Message, Receive, Scope, Send
from yarl import URL

from moorage.gateway.dispatch import Dispatcher, Lease, Overloaded, QueueTimedOut
from moorage.gateway.metrics import GatewayMetrics
from moorage.gateway.routes import EndpointRoute, RouteTableHolder

PREFIX = "/inference-api/v1/inference_service/"
# The controller publishes a table at least every reconcile interval (1 s by default).
ROUTE_WAIT_S = 2.0
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
_DROPPED_REQUEST = _HOP_BY_HOP | {b"host", b"authorization"}


class _ClientGone(Exception):
    pass


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _no_replica_message(route: EndpointRoute) -> str:
    service_id = route.service_id
    if route.status_hint == "stopped":
        return (
            f"endpoint {service_id} is stopped; "
            f"POST /v1/inference-service/{service_id}/start to run it again"
        )
    return (
        f"endpoint {service_id} has no ready replica yet; retry when "
        f"GET /v1/inference-service/{service_id} says 'available'"
    )


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


class GatewayApp:
    def __init__(self, routes: RouteTableHolder) -> None:
        self.routes = routes
        self.dispatcher = Dispatcher(lambda service_id: routes.current.endpoints.get(service_id))
        self.metrics = GatewayMetrics(self.dispatcher)
        routes.on_swap(self.dispatcher.routes_changed)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def session(self) -> aiohttp.ClientSession:
        """Pooled keep-alive connections to replicas, made on the serving event loop."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=75),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
                auto_decompress=False,  # bytes pass through as the replica sent them
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                trust_env=False,
            )
        return self._session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        service_id, _, suffix = scope["path"][len(PREFIX) :].partition("/")
        token = _bearer(scope)
        table = self.routes.current
        if token is None:
            await _send_error(
                send,
                401,
                "unauthenticated",
                "send your moorage token as 'Authorization: Bearer <token>'",
            )
            return
        digest = hashlib.sha256(token.encode()).hexdigest()
        if digest not in table.known_token_hashes:
            await _send_error(
                send,
                401,
                "unauthenticated",
                "this token is unknown or revoked; ask your admin for a new one",
            )
            return
        route = table.endpoints.get(service_id)
        if route is None:  # maybe created a moment ago: its route comes with a next table
            route = await self.routes.wait_for_route(service_id, ROUTE_WAIT_S)
        if route is None or digest not in route.owner_token_hashes:
            await _send_error(
                send,
                404,
                "not_found",
                f"no endpoint {service_id!r}; GET /v1/inference-service lists yours",
            )
            return
        if not route.replicas:
            self.metrics.refused(service_id, "no_ready_replica")
            await _send_error(
                send, 503, "no_ready_replica", _no_replica_message(route), [(b"retry-after", b"2")]
            )
            return
        await self._dispatch(scope, receive, send, route, suffix)

    async def _dispatch(
        self, scope: Scope, receive: Receive, send: Send, route: EndpointRoute, suffix: str
    ) -> None:
        service_id = route.service_id
        arrived = time.perf_counter()
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            async with self.dispatcher.lease(route) as lease:
                self.metrics.waited(service_id, time.perf_counter() - arrived)
                reached = await self._forward(scope, receive, send_and_note, lease, suffix)
        except Overloaded as full:
            self.metrics.refused(service_id, "overloaded")
            await _send_error(
                send,
                429,
                "overloaded",
                f"every replica of endpoint {service_id} is busy and its queue is full; "
                f"retry in {full.retry_after_s} s or scale the endpoint up",
                [(b"retry-after", str(full.retry_after_s).encode())],
            )
            return
        except QueueTimedOut:
            self.metrics.refused(service_id, "queue_timeout")
            await _send_error(
                send,
                503,
                "queue_timeout",
                f"no replica of endpoint {service_id} became free within "
                f"{route.admission.queue_timeout_s:g} s; retry, or scale the endpoint up",
                [(b"retry-after", b"1")],
            )
            return
        if not reached:
            self.metrics.refused(service_id, "replica_unreachable")
        elif status:
            self.metrics.answered(service_id, status, time.perf_counter() - arrived)

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, lease: Lease, suffix: str
    ) -> bool:
        """Sends the request to the replica and streams its answer back; False when the
        replica could not be reached (the client then got a 502)."""
        url = f"http://{lease.replica.address}/{suffix}"
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        headers = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in _DROPPED_REQUEST
        )
        client_host = scope["client"][0] if scope.get("client") else ""
        headers.add("X-Forwarded-For", client_host)
        headers.add("X-Forwarded-Proto", scope["scheme"])
        for name, value in scope["headers"]:
            if name == b"host":
                headers.add("X-Forwarded-Host", value.decode("latin-1"))
        try:
            response = await self.session().request(
                scope["method"],
                URL(url, encoded=True),
                headers=headers,
                data=self._request_body(receive) if _has_body(scope) else None,
                allow_redirects=False,
            )
        except _ClientGone:
            return True
        except (aiohttp.ClientError, OSError) as exc:
            await _send_error(
                send,
                502,
                "replica_unreachable",
                f"the replica did not answer ({type(exc).__name__}); retry the call",
            )
            return False
        try:
            await self._stream_response(response, receive, send, lease)
        finally:
            response.release()
        return True

    async def _request_body(self, receive: Receive) -> AsyncIterator[bytes]:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return

    async def _stream_response(
        self, response: aiohttp.ClientResponse, receive: Receive, send: Send, lease: Lease
    ) -> None:
        headers = [(k, v) for k, v in response.raw_headers if k.lower() not in _HOP_BY_HOP]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        relay = asyncio.ensure_future(self._relay(response, send, lease))
        watch = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait({relay, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (relay, watch):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if relay.done() and not relay.cancelled() and relay.exception() is not None:
            raise relay.exception()  # type: ignore[misc]

    async def _relay(self, response: aiohttp.ClientResponse, send: Send, lease: Lease) -> None:
        async for chunk in response.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        lease.release()  # the replica is done: its slot is free before the client is
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
