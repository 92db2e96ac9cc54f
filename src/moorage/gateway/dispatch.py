"""Admitting requests to replicas: caps, policy, and a bounded FIFO queue.

A request goes to a replica with room under the endpoint's per-replica
``max_concurrency``, picked by the endpoint's policy. When every replica is
full it waits in the endpoint's queue, first come first served; a freed slot
is handed straight to the head of the queue. A full queue refuses at once
(``Overloaded``, a 429); a wait longer than ``queue_timeout_s`` gives up
(``QueueTimedOut``).

In-flight counts change in exactly two places, ``_take`` and ``_give_back``,
and every lease gives back in ``finally``, including the lease handed to a
waiter that was cancelled a moment later.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from moorage.gateway.policies import Policy, make_policy
from moorage.models.demand import Demand, EndpointDemand
from moorage.models.states import DesiredState
from moorage.routing.holder import RouteTableHolder
from moorage.routing.table import EndpointRoute, ReplicaRoute


class Overloaded(Exception):
    """The endpoint's queue is full."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"queue full; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class QueueTimedOut(Exception):
    """A request waited its whole queue timeout without a free replica."""


class CannotStart(Exception):
    """No replica of the endpoint can start (a crash loop): requests waiting for one
    are answered now, with why."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class EndpointGone(Exception):
    """The endpoint a request waits for was stopped or deleted meanwhile: no replica
    will come, so the request is answered now rather than at its timeout."""

    def __init__(self, stopped: bool) -> None:
        super().__init__("stopped" if stopped else "deleted")
        self.stopped = stopped


@dataclass(frozen=True)
class DispatchSnapshot:
    in_flight: dict[str, dict[str, int]]  # endpoint -> replica -> requests
    queued: dict[str, int]
    # Counters per endpoint since the gateway started, for an autoscaler: requests
    # admitted, requests held while no replica was ready, and the time integrals of
    # requests in flight and waiting (request-seconds: their difference over an
    # interval, divided by it, is the mean concurrency, however short the requests).
    arrived: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    busy_s: dict[str, float] = field(default_factory=dict)
    waited_s: dict[str, float] = field(default_factory=dict)
    # And, for the owner's traffic charts: responses finished, those with a status of
    # 500 or more, and the sum of their latencies (arrival to the response's end).
    answered: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency_s: dict[str, float] = field(default_factory=dict)

    def demand(self) -> Demand:
        """The snapshot as an autoscaler reads it (``models/demand.py``)."""
        service_ids = {
            *self.in_flight,
            *self.queued,
            *self.arrived,
            *self.held,
            *self.busy_s,
            *self.answered,
        }
        return Demand(
            {
                service_id: EndpointDemand(
                    in_flight=sum(self.in_flight.get(service_id, {}).values()),
                    waiting=self.queued.get(service_id, 0),
                    arrived=self.arrived.get(service_id, 0),
                    held=self.held.get(service_id, 0),
                    busy_s=self.busy_s.get(service_id, 0.0),
                    waited_s=self.waited_s.get(service_id, 0.0),
                    answered=self.answered.get(service_id, 0),
                    errors=self.errors.get(service_id, 0),
                    latency_s=self.latency_s.get(service_id, 0.0),
                )
                for service_id in service_ids
                if service_id
            }
        )


class _Load:
    """One endpoint's requests in flight and the integrals of those and of the ones
    waiting, advanced before every change of either."""

    __slots__ = ("at", "busy_s", "in_flight", "waited_s")

    def __init__(self, now: float) -> None:
        self.in_flight = 0
        self.busy_s = 0.0
        self.waited_s = 0.0
        self.at = now

    def advance(self, now: float, waiting: int) -> None:
        span = now - self.at
        if span > 0:
            self.busy_s += self.in_flight * span
            self.waited_s += waiting * span
            self.at = now


class _Answers:
    """One endpoint's finished responses: how many, how many failed (status 500 or
    more), and the sum of their latencies. One object per endpoint, so counting a
    response is a single dictionary lookup."""

    __slots__ = ("answered", "errors", "latency_s")

    def __init__(self) -> None:
        self.answered = 0
        self.errors = 0
        self.latency_s = 0.0


class Lease:
    """One request's hold on a replica; releasing twice is harmless."""

    __slots__ = ("_dispatcher", "replica", "service_id")

    def __init__(self, dispatcher: Dispatcher, replica: ReplicaRoute, service_id: str) -> None:
        self.replica = replica
        self.service_id = service_id
        self._dispatcher: Dispatcher | None = dispatcher

    def release(self) -> None:
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher._give_back(self.replica, self.service_id)


class Dispatcher:
    def __init__(
        self,
        current_route: Callable[[str], EndpointRoute | None],
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._loads: dict[str, _Load] = {}
        self._held: dict[str, int] = {}
        self._current_route = current_route
        self._rng = rng or random.Random()
        self._in_flight: dict[str, int] = {}
        self._endpoint_of: dict[str, str] = {}  # replica -> endpoint, for metrics
        self._waiting: dict[str, deque[asyncio.Future[ReplicaRoute]]] = {}
        self._policies: dict[tuple[str, str], Policy] = {}
        self._arrived: dict[str, int] = {}
        self._answers: dict[str, _Answers] = {}

    @classmethod
    def following(cls, routes: RouteTableHolder) -> Dispatcher:
        """A dispatcher reading the holder's current table, whose waiting requests are
        offered the replicas each new table brings."""
        dispatcher = cls(routes.route_of)
        routes.on_swap(dispatcher.routes_changed)
        return dispatcher

    def in_flight(self, replica_id: str) -> int:
        return self._in_flight.get(replica_id, 0)

    def queue_length(self, service_id: str) -> int:
        return len(self._waiting.get(service_id, ()))

    def snapshot(self) -> DispatchSnapshot:
        in_flight: dict[str, dict[str, int]] = {}
        for replica_id, count in self._in_flight.items():
            in_flight.setdefault(self._endpoint_of.get(replica_id, ""), {})[replica_id] = count
        queued = {service_id: len(queue) for service_id, queue in self._waiting.items()}
        for service_id in self._loads:
            self._touch(service_id)
        return DispatchSnapshot(
            in_flight,
            queued,
            dict(self._arrived),
            dict(self._held),
            {service_id: load.busy_s for service_id, load in self._loads.items()},
            {service_id: load.waited_s for service_id, load in self._loads.items()},
            {service_id: seen.answered for service_id, seen in self._answers.items()},
            {service_id: seen.errors for service_id, seen in self._answers.items()},
            {service_id: seen.latency_s for service_id, seen in self._answers.items()},
        )

    def _touch(self, service_id: str) -> _Load:
        """The endpoint's load, its integrals advanced to now: called before every
        change of its requests in flight or waiting."""
        now = self._monotonic()
        load = self._loads.get(service_id)
        if load is None:
            load = self._loads[service_id] = _Load(now)
        load.advance(now, len(self._waiting.get(service_id, ())))
        return load

    def held(self, service_id: str) -> None:
        """Counts a request held while the endpoint had no replica ready: a wake-up,
        even if the request gives up at once."""
        self._held[service_id] = self._held.get(service_id, 0) + 1

    def arrived(self, service_id: str) -> None:
        """Counts a request admitted to an endpoint (once, however often it is retried)."""
        self._arrived[service_id] = self._arrived.get(service_id, 0) + 1

    def answered(self, service_id: str, status: int, seconds: float) -> None:
        """Counts a response to an admitted request once it ended (the last byte of a
        stream included), whoever answered it: the replica, or the gateway itself."""
        seen = self._answers.get(service_id)
        if seen is None:
            seen = self._answers[service_id] = _Answers()
        seen.answered += 1
        seen.latency_s += seconds
        if status >= 500:
            seen.errors += 1

    def _policy(self, route: EndpointRoute) -> Policy:
        key = (route.service_id, route.admission.policy)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = make_policy(route.admission.policy, self._rng)
        return policy

    def _pick(
        self, route: EndpointRoute, exclude: frozenset[str] = frozenset()
    ) -> ReplicaRoute | None:
        cap = route.admission.max_concurrency
        if cap is None and not exclude:
            room: Sequence[ReplicaRoute] = route.replicas
        else:
            room = [
                r
                for r in route.replicas
                if (cap is None or self.in_flight(r.replica_id) < cap)
                and r.replica_id not in exclude
            ]
        return self._policy(route).choose(room, self.in_flight) if room else None

    def _take(self, replica: ReplicaRoute, service_id: str) -> None:
        self._touch(service_id).in_flight += 1
        self._in_flight[replica.replica_id] = self.in_flight(replica.replica_id) + 1
        self._endpoint_of[replica.replica_id] = service_id

    def _give_back(self, replica: ReplicaRoute, service_id: str) -> None:
        self._touch(service_id).in_flight -= 1
        remaining = self._in_flight[replica.replica_id] - 1
        if remaining:
            self._in_flight[replica.replica_id] = remaining
        else:
            del self._in_flight[replica.replica_id]
            del self._endpoint_of[replica.replica_id]
        self._hand_off(service_id)

    def _hand_off(self, service_id: str) -> None:
        """Gives free slots to the endpoint's waiting requests, oldest first; tells
        them at once when their endpoint was stopped or deleted."""
        queue = self._waiting.get(service_id)
        route = self._current_route(service_id)
        failure: Exception | None = None
        if route is None or route.status_hint is DesiredState.STOPPED:
            failure = EndpointGone(stopped=route is not None)
        elif not route.replicas and route.cannot_start is not None:
            failure = CannotStart(route.cannot_start)
        if queue and failure is not None:
            self._touch(service_id)
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_exception(failure)
        while queue and route is not None:
            if queue[0].done():  # gave up meanwhile
                self._touch(service_id)
                queue.popleft()
                continue
            replica = self._pick(route)
            if replica is None:
                break
            self._take(replica, service_id)
            queue.popleft().set_result(replica)
        if queue is not None and not queue:
            del self._waiting[service_id]

    def routes_changed(self) -> None:
        """New replicas may have room for waiting requests; endpoints gone from the table
        are no longer counted."""
        for service_id in list(self._waiting):
            self._hand_off(service_id)
        gone = [s for s in self._arrived if self._current_route(s) is None]
        for service_id in gone:
            del self._arrived[service_id]
            self._held.pop(service_id, None)
        for service_id in [s for s in self._answers if self._current_route(s) is None]:
            del self._answers[service_id]
        for service_id in [s for s, load in self._loads.items() if not load.in_flight]:
            if self._current_route(service_id) is None and service_id not in self._waiting:
                del self._loads[service_id]

    def try_acquire(
        self, route: EndpointRoute, exclude: frozenset[str] = frozenset()
    ) -> Lease | None:
        """A replica at once, or None when the request must queue (every replica at its
        cap, or earlier requests already waiting: the queue is first come first served).
        ``exclude`` skips replicas a retried request already failed to reach."""
        if self._waiting.get(route.service_id):
            return None
        replica = self._pick(route, exclude)
        if replica is None:
            return None
        self._take(replica, route.service_id)
        return Lease(self, replica, route.service_id)

    async def acquire(self, route: EndpointRoute, timeout_s: float | None = None) -> Lease:
        """A replica, waiting in the endpoint's queue if need be (up to ``timeout_s``,
        by default its ``queue_timeout_s``); the caller must release the lease however
        the request ends."""
        lease = self.try_acquire(route)
        if lease is not None:
            return lease
        return Lease(self, await self._wait(route, timeout_s), route.service_id)

    @contextlib.asynccontextmanager
    async def lease(self, route: EndpointRoute) -> AsyncIterator[Lease]:
        """``acquire`` for a block: the slot is given back when the caller says the
        replica is done (``Lease.release``) or, at the latest, when the block ends."""
        lease = await self.acquire(route)
        try:
            yield lease
        finally:
            lease.release()

    async def _wait(self, route: EndpointRoute, timeout_s: float | None) -> ReplicaRoute:
        admission = route.admission
        if timeout_s is None:
            timeout_s = admission.queue_timeout_s
        queue = self._waiting.setdefault(route.service_id, deque())
        if len(queue) >= admission.max_queue:
            if not queue:
                del self._waiting[route.service_id]
            raise Overloaded(retry_after_s=max(1, round(admission.queue_timeout_s / 10)))
        waiter: asyncio.Future[ReplicaRoute] = asyncio.get_running_loop().create_future()
        self._touch(route.service_id)
        queue.append(waiter)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():
                # A replica was handed over just as this request gave up: return it.
                self._give_back(waiter.result(), route.service_id)
            else:
                waiter.cancel()
                self._touch(route.service_id)
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
                if not queue and self._waiting.get(route.service_id) is queue:
                    del self._waiting[route.service_id]
            if isinstance(exc, TimeoutError):
                raise QueueTimedOut from None
            raise
