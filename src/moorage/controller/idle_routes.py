"""Route entries of endpoints that want no replicas, kept between passes.

A stopped endpoint (or one scaled to 0) needs a route entry only so that the
gateway can tell its owner "stopped, start it" (503) rather than "no such
endpoint" (404). That entry changes only when the store does, so the reconcile
pass does not load those endpoints every second: it reloads them after an API
write (``changed``) or every ``refresh_s`` (a safety net for writes made
elsewhere), and rebuilds the entries only when those rows or the owners' tokens
changed. A thousand stopped endpoints thus cost a pass nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from moorage.routing.table import EndpointRoute
from moorage.store.endpoints import IdleEndpoint

REFRESH_S = 60.0


class IdleRoutes:
    def __init__(
        self, refresh_s: float = REFRESH_S, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.refresh_s = refresh_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._generation = 1  # bumped by every store change; 0 means "never loaded"
        self._loaded_generation = 0
        self._loaded_at = 0.0
        self._rows: Sequence[IdleEndpoint] = ()
        self._tokens: Mapping[str, frozenset[str]] | None = None
        self._routes: dict[str, EndpointRoute] = {}

    def changed(self) -> None:
        """The store changed (an API write committed): reload at the next pass.
        Safe from any thread."""
        with self._lock:
            self._generation += 1

    def routes(
        self,
        load: Callable[[], Sequence[IdleEndpoint]],
        tokens: Mapping[str, frozenset[str]],
    ) -> Mapping[str, EndpointRoute]:
        """The entries, reloading with ``load`` only when they may be out of date.

        The generation is read before loading: a change committed while loading bumps
        it again, so it is picked up by the next pass, never lost.
        """
        with self._lock:
            generation = self._generation
        now = self._monotonic()
        if generation != self._loaded_generation or now - self._loaded_at >= self.refresh_s:
            self._rows = load()
            self._loaded_generation, self._loaded_at = generation, now
            self._tokens = None
        if self._tokens is None or tokens != self._tokens:
            self._routes = {
                idle.service_id: EndpointRoute(
                    service_id=idle.service_id,
                    owner_token_hashes=tokens.get(idle.user_id, frozenset()),
                    replicas=(),
                    status_hint=idle.desired_state,
                    admission=idle.gateway,
                )
                for idle in self._rows
            }
            self._tokens = tokens
        return self._routes
