"""Where each request goes: a replica of an endpoint, the control plane, or an answer
from the gateway itself.

Inference requests (``/inference-api/v1/inference_service/{id}/...``) are
checked against the route table (no store access on this path): the caller's
moorage token must own the endpoint, and is never forwarded. A replica is
leased from the dispatcher (cap, policy, FIFO queue); a request that could not
reach its replica is tried on another, up to the endpoint's ``retries``. One
that reached a replica is sent again only when the client opted in, the
method is idempotent and its body fit the retry buffer (``Exchange.replayable``).

An endpoint id that is not in the table and one that belongs to someone else get
the same 404, at once: answering either differently would tell a caller which
ids exist.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from moorage import refusals
from moorage.gateway.dispatch import (
    CannotStart,
    Dispatcher,
    EndpointGone,
    Lease,
    Overloaded,
    QueueTimedOut,
)
from moorage.gateway.http1.exchange import API_BODY_SETTING, BODY_SETTING, Exchange
from moorage.gateway.http1.request import COLD_START_HEADER
from moorage.gateway.metrics import GatewayMetrics
from moorage.models.states import DesiredState
from moorage.routing.holder import RouteTableHolder
from moorage.routing.table import EndpointRoute
from moorage.tokens import hash_token

PREFIX = b"/inference-api/v1/inference_service/"
# The caller's moorage token and the opt-in header are for the gateway, not the model.
_DROPPED_FOR_REPLICAS = frozenset(
    {b"authorization", b"host", b"x-moorage-retry-on", COLD_START_HEADER}
)
_DROPPED_FOR_API = frozenset({b"host"})
LocalHandler = Callable[[Exchange], None]


def bearer_token(authorization: bytes) -> str | None:
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


# sha256 of recently seen tokens: hashing on every request is avoidable work. Bounded,
# so a flood of made-up tokens evicts old entries instead of growing memory.
token_digest = functools.lru_cache(maxsize=4096)(hash_token)


class GatewayRouter:
    def __init__(
        self,
        routes: RouteTableHolder,
        dispatcher: Dispatcher,
        metrics: GatewayMetrics,
        *,
        api_address: str | None = None,
        local: dict[bytes, LocalHandler] | None = None,
        serves_inference: bool = True,
    ) -> None:
        self.routes = routes
        # False in front of `moorage api` alone: inference is the standalone gateways'.
        self.serves_inference = serves_inference
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.api_address = api_address
        self.local = local or {}
        # Told when a request is held for an endpoint with no replica ready, so that
        # its autoscaler starts one at once rather than at its next look.
        self.on_cold_start: Callable[[str], None] = lambda _service_id: None

    # -- Router ----------------------------------------------------------------------

    def route(self, exchange: Exchange) -> None:
        request = exchange.request
        target = request.target
        if target.startswith(PREFIX):
            if not self.serves_inference:
                exchange.refuse(refusals.inference_elsewhere())
                return
            if request.content_length > exchange.body_limit:
                exchange.refuse(refusals.body_too_large(exchange.body_limit, BODY_SETTING))
                return
            self._inference(exchange, target[len(PREFIX) :])
            return
        handler = self.local.get(target.partition(b"?")[0])
        if handler is not None:
            handler(exchange)
        elif self.api_address is not None:
            limits = exchange.server.limits
            exchange.body_limit = limit = limits.api_max_body_bytes
            if request.content_length > limit:
                exchange.refuse(refusals.body_too_large(limit, API_BODY_SETTING))
                return
            if not exchange.request_done:  # a trickled body may not hold a connection
                exchange.body_deadline = exchange.started + limits.api_body_timeout_s
            exchange.forward(
                self.api_address,
                request.upstream_head(
                    target, request.host or b"moorage", _DROPPED_FOR_API, exchange.client.peer
                ),
            )
        else:
            exchange.refuse(refusals.api_elsewhere())

    def upstream_failed(self, exchange: Exchange, error: Exception | None) -> None:
        route = exchange.route
        may_retry = not exchange.reached or exchange.replayable
        if route is not None and exchange.retries_left > 0 and may_retry:
            current = self.routes.current.endpoints.get(route.service_id, route)
            lease = self.dispatcher.try_acquire(current, exclude=exchange.tried)
            if lease is not None:
                exchange.retries_left -= 1
                exchange.prepare_retry()
                self.metrics.retried(route.service_id)
                self._send(exchange, current, lease)
                return
        reason = type(error).__name__ if error is not None else "closed the connection"
        if route is None:
            exchange.refuse(refusals.api_unreachable(reason))
            return
        exchange.refuse(refusals.replica_unreachable(route.service_id, reason))

    def finished(self, exchange: Exchange) -> None:
        """Called once per request, when its exchange ends: after the last byte of a
        response (a stream's included), a refusal, or the client leaving."""
        route = exchange.route
        if route is None:
            return
        status = exchange.status
        seconds = exchange.server.now() - exchange.started
        if status and route.status_hint is not DesiredState.STOPPED:
            # Only requests counted as arrived (``_admit``), and only those that got a
            # response status: a client that left before one is not an answer.
            self.dispatcher.answered(route.service_id, status, seconds)
        if exchange.note:
            self.metrics.refused(route.service_id, exchange.note)
        elif status:
            self.metrics.answered(route.service_id, status, seconds)

    # -- inference requests ----------------------------------------------------------

    def _inference(self, exchange: Exchange, rest: bytes) -> None:
        service, _, suffix = rest.partition(b"/")
        if b"?" in service:  # "{id}?a=b/c": the query may hold slashes, kept whole
            service, _, query = rest.partition(b"?")
            suffix = b"?" + query
        token = bearer_token(exchange.request.authorization)
        if token is None:
            exchange.refuse(refusals.no_token())
            return
        digest = token_digest(token)
        table = self.routes.current
        if digest not in table.known_token_hashes:
            exchange.refuse(refusals.unknown_token())
            return
        service_id = service.decode("latin-1")
        route = table.endpoints.get(service_id)
        if route is None:
            # Not waited for: an endpoint is in the table from the controller's first pass
            # after its creation, long before a replica of it is ready.
            self._not_found(exchange, service_id)
            return
        self._admit(exchange, route, digest, suffix)

    def _not_found(self, exchange: Exchange, service_id: str) -> None:
        exchange.refuse(refusals.endpoint_not_found(service_id))

    def _admit(self, exchange: Exchange, route: EndpointRoute, digest: str, suffix: bytes) -> None:
        if digest not in route.owner_token_hashes:
            self._not_found(exchange, route.service_id)
            return
        exchange.route = route
        exchange.retries_left = route.admission.retries
        exchange.path = b"/" + suffix
        stopped = route.status_hint is DesiredState.STOPPED
        if not stopped:
            self.dispatcher.arrived(route.service_id)
        if not route.replicas and route.scales_from_zero and not stopped:
            if route.cannot_start is not None:
                exchange.refuse(refusals.cannot_start(route.service_id, route.cannot_start))
                return
            self._hold(exchange, route)
            return
        if not route.replicas:
            exchange.refuse(
                refusals.endpoint_stopped(route.service_id)
                if stopped
                else refusals.no_ready_replica(route.service_id)
            )
            return
        lease = self.dispatcher.try_acquire(route)
        if lease is None:
            exchange.task = asyncio.ensure_future(self._queue(exchange, route))
        else:
            self._send(exchange, route, lease)

    def _hold(self, exchange: Exchange, route: EndpointRoute) -> None:
        """Holds a request while a replica starts (an automatic endpoint at zero, or
        whose replicas are all gone): it waits in the endpoint's queue, up to its
        cold-start timeout, and is served by the first replica that becomes ready."""
        asked = exchange.request.cold_start_timeout_s
        timeout_s = route.admission.cold_start_timeout_s if asked is None else asked
        self.dispatcher.held(route.service_id)
        self.on_cold_start(route.service_id)
        exchange.task = asyncio.ensure_future(self._queue(exchange, route, timeout_s))

    async def _queue(
        self, exchange: Exchange, route: EndpointRoute, cold_start_s: float | None = None
    ) -> None:
        try:
            lease = await self.dispatcher.acquire(route, cold_start_s)
        except Overloaded as full:
            exchange.task = None
            exchange.refuse(
                refusals.overloaded(route.service_id, full.retry_after_s)
                if cold_start_s is None
                else refusals.cold_start_queue_full(route.service_id, route.admission.max_queue)
            )
            return
        except CannotStart as failed:
            exchange.task = None
            exchange.refuse(refusals.cannot_start(route.service_id, failed.why))
            return
        except EndpointGone as gone:
            exchange.task = None
            exchange.refuse(
                refusals.endpoint_stopped(route.service_id)
                if gone.stopped
                else refusals.endpoint_not_found(route.service_id)
            )
            return
        except QueueTimedOut:
            exchange.task = None
            exchange.refuse(
                refusals.queue_timeout(route.service_id, route.admission.queue_timeout_s)
                if cold_start_s is None
                else refusals.cold_start_timeout(route.service_id, cold_start_s)
            )
            return
        exchange.task = None
        self.metrics.waited(route.service_id, exchange.server.now() - exchange.started)
        self._send(exchange, route, lease)

    def _send(self, exchange: Exchange, route: EndpointRoute, lease: Lease) -> None:
        replica = lease.replica
        exchange.lease = lease
        exchange.tried = exchange.tried | {replica.replica_id}
        request = exchange.request
        admission = route.admission
        exchange.forward(
            replica.address,
            request.upstream_head(
                exchange.path, replica.host, _DROPPED_FOR_REPLICAS, exchange.client.peer
            ),
            admission.idle_timeout_s,
            admission.request_timeout_s,
        )
