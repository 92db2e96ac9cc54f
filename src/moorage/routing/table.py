"""The route table: frozen values that say which replicas serve which endpoint.

The control plane builds it (``build_route_table``) and the gateway reads it;
neither owns it, so both import it from here. Tables are replaced whole, never
edited, so a reader holding one never sees half of an update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from moorage.models.endpoints import Endpoint, GatewaySettings
from moorage.models.replicas import Replica
from moorage.models.states import DesiredState, ReplicaState


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
    # What the owner asked for: a route without replicas is "stopped" or still starting.
    status_hint: DesiredState = DesiredState.RUNNING
    admission: GatewaySettings = field(default_factory=GatewaySettings)
    # Scaled automatically: with no replica ready, requests are held while one starts
    # (up to ``admission.cold_start_timeout_s``) instead of answered 503.
    scales_from_zero: bool = False
    # Why no replica of its revision can start (a crash loop, a wrong port): held
    # requests are answered at once with it rather than at their timeout.
    cannot_start: str | None = None


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


# What a route says of a failing replica: enough to act on, bounded.
MAX_CANNOT_START_CHARS = 300


def cannot_start(
    endpoint: Endpoint, replicas: Sequence[Replica], crash_loop_threshold: int
) -> str | None:
    """Why none of the endpoint's current replicas can start, when none is ready and
    one cannot run; None otherwise."""
    current = [r for r in replicas if r.revision == endpoint.revision and r.state.is_live]
    if any(r.state is ReplicaState.READY for r in current):
        return None
    failing = [r for r in current if r.cannot_run(crash_loop_threshold)]
    if not failing:
        return None
    worst = max(failing, key=lambda r: r.consecutive_failures)
    times = "once" if worst.consecutive_failures == 1 else f"{worst.consecutive_failures} times"
    why = f"its replica failed {times} in a row, last: {worst.last_failure or 'no detail'}"
    return why[:MAX_CANNOT_START_CHARS]


def build_route_table(
    endpoints: Sequence[Endpoint],
    replicas: Sequence[Replica],
    token_hashes_by_user: Mapping[str, frozenset[str]],
    crash_loop_threshold: int = 3,
) -> RouteTable:
    ready: dict[str, list[ReplicaRoute]] = {}
    by_endpoint: dict[str, list[Replica]] = {}
    for replica in replicas:
        by_endpoint.setdefault(replica.endpoint_id, []).append(replica)
        if replica.state is ReplicaState.READY and replica.address:
            ready.setdefault(replica.endpoint_id, []).append(
                ReplicaRoute(replica.replica_id, replica.address)
            )
    routes = {
        e.service_id: EndpointRoute(
            service_id=e.service_id,
            owner_token_hashes=token_hashes_by_user.get(e.user_id, frozenset()),
            replicas=tuple(ready.get(e.service_id, ())),
            status_hint=e.desired_state,
            admission=e.gateway,
            scales_from_zero=e.autoscaled,
            cannot_start=(
                cannot_start(e, by_endpoint.get(e.service_id, ()), crash_loop_threshold)
                if e.autoscaled and e.service_id not in ready
                else None
            ),
        )
        for e in endpoints
        if not e.is_deleted
    }
    known = (
        frozenset().union(*token_hashes_by_user.values()) if token_hashes_by_user else frozenset()
    )
    return RouteTable(MappingProxyType(routes), known)
