"""The gateway's route table: frozen values, built by the control plane and swapped whole.

Request handlers read ``RouteTableHolder.current`` once per request, so a table
swap mid-request can never show them half of an update.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from moorage.models.endpoints import Endpoint, GatewaySettings
from moorage.models.replicas import Replica, ReplicaState


def host_header(address: str) -> bytes:
    """The ``Host`` a replica is sent: its address, or ``localhost`` for a Unix socket
    (``unix:/path``), whose path means nothing to the app."""
    return b"localhost" if address.startswith("unix:") else address.encode()


@dataclass(frozen=True)
class ReplicaRoute:
    """A ready replica: ``address`` is ``host:port``, ``[v6]:port`` or ``unix:/path``."""

    replica_id: str
    address: str
    host: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once per table, not per request.
        object.__setattr__(self, "host", host_header(self.address))


@dataclass(frozen=True)
class EndpointRoute:
    service_id: str
    owner_token_hashes: frozenset[str]
    replicas: tuple[ReplicaRoute, ...]
    status_hint: str = "initializing"
    admission: GatewaySettings = field(default_factory=GatewaySettings)


@dataclass(frozen=True)
class RouteTable:
    endpoints: Mapping[str, EndpointRoute] = field(default_factory=lambda: MappingProxyType({}))
    known_token_hashes: frozenset[str] = frozenset()

    @classmethod
    def empty(cls) -> RouteTable:
        return cls()

    def without(self, replica_ids: frozenset[str]) -> RouteTable:
        """This table minus some replicas: taken out of rotation before they stop."""
        routes = {
            service_id: replace(
                route, replicas=tuple(r for r in route.replicas if r.replica_id not in replica_ids)
            )
            for service_id, route in self.endpoints.items()
        }
        return RouteTable(MappingProxyType(routes), self.known_token_hashes)

    def with_ready(self, replicas: Sequence[Replica]) -> RouteTable:
        """This table plus replicas that just passed their probe, on endpoints it
        routes: published before the store says they are ready, so that an endpoint
        read as ``available`` is always served."""
        joining: dict[str, list[ReplicaRoute]] = {}
        for replica in replicas:
            if replica.address and replica.endpoint_id in self.endpoints:
                joining.setdefault(replica.endpoint_id, []).append(
                    ReplicaRoute(replica.replica_id, replica.address)
                )
        if not joining:
            return self
        routes = dict(self.endpoints)
        for service_id, added in joining.items():
            route = routes[service_id]
            known = {r.replica_id for r in route.replicas}
            fresh = tuple(r for r in added if r.replica_id not in known)
            routes[service_id] = replace(route, replicas=route.replicas + fresh)
        return RouteTable(MappingProxyType(routes), self.known_token_hashes)


def build_route_table(
    endpoints: Sequence[Endpoint],
    replicas: Sequence[Replica],
    token_hashes_by_user: Mapping[str, frozenset[str]],
) -> RouteTable:
    ready: dict[str, list[ReplicaRoute]] = {}
    for replica in replicas:
        if replica.state is ReplicaState.READY and replica.address:
            ready.setdefault(replica.endpoint_id, []).append(
                ReplicaRoute(replica.replica_id, replica.address)
            )
    routes = {
        e.service_id: EndpointRoute(
            service_id=e.service_id,
            owner_token_hashes=token_hashes_by_user.get(e.user_id, frozenset()),
            replicas=tuple(ready.get(e.service_id, ())),
            status_hint=e.desired_state.value,
            admission=e.gateway,
        )
        for e in endpoints
        if not e.is_deleted
    }
    known = (
        frozenset().union(*token_hashes_by_user.values()) if token_hashes_by_user else frozenset()
    )
    return RouteTable(MappingProxyType(routes), known)


class RouteTableHolder:
    """Where the current table lives; assignment is the atomic swap.

    ``swap`` must be called on the gateway's event loop; ``wait_for_route`` lets a
    request for an endpoint the table does not know yet (created a moment ago)
    wait for the next table instead of failing.
    """

    def __init__(self, live: bool = True) -> None:
        self.current = RouteTable.empty()
        # False for a table read from a file: no newer table will come, so nobody waits.
        self.live = live
        self._swapped: asyncio.Event | None = None
        self._listeners: list[Callable[[], None]] = []

    def route_of(self, service_id: str) -> EndpointRoute | None:
        return self.current.endpoints.get(service_id)

    def on_swap(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def swap(self, table: RouteTable) -> None:
        self.current = table
        if self._swapped is not None:
            self._swapped.set()
            self._swapped = None
        for listener in self._listeners:
            listener()

    async def next_swap(self, timeout_s: float) -> None:
        """Returns at the next swap, or after ``timeout_s``."""
        if self._swapped is None:
            self._swapped = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._swapped.wait(), timeout_s)

    async def wait_for_route(self, service_id: str, timeout_s: float) -> EndpointRoute | None:
        if not self.live:
            return self.current.endpoints.get(service_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (route := self.current.endpoints.get(service_id)) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if self._swapped is None:
                self._swapped = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._swapped.wait(), remaining)
        return route
