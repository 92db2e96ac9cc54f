"""Route entries of endpoints that want no replicas, kept between passes.

A stopped endpoint (or one scaled to 0) needs a route entry only so that the
gateway can tell its owner "stopped, start it" (503) rather than "no such
endpoint" (404). That entry changes only when the store does, so the reconcile
pass does not load those endpoints every second. After an API write
(``changed``) it reads only the endpoints written since the last look (by
``updated_at``, indexed, with a margin for transactions that commit late), so a
write costs what it changed, not one row per stopped endpoint. Every
``refresh_s`` it reloads them all, a safety net for writes made elsewhere (or
stamped with a clock that went back). Entries are rebuilt only when those rows
or the owners' tokens changed. Ten thousand stopped endpoints thus cost a pass
nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from moorage.routing.table import EndpointRoute
from moorage.store.endpoints import IdleChange, IdleEndpoint

REFRESH_S = 60.0
# How late a write may commit after stamping its updated_at and still be read by the
# next look; later than this, the periodic reload picks it up.
LATE_COMMIT = timedelta(seconds=30)


class IdleSource(Protocol):
    """Where the entries come from (``EndpointRepository``)."""

    def list_idle(self) -> Sequence[IdleEndpoint]: ...

    def idle_changes(self, since: datetime) -> Sequence[IdleChange]: ...

    def last_update(self) -> datetime | None: ...


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
        self._rows: dict[str, IdleEndpoint] = {}
        # The newest updated_at seen: the next look reads from it (less LATE_COMMIT).
        self._seen: datetime | None = None
        self._tokens: Mapping[str, frozenset[str]] | None = None
        self._routes: dict[str, EndpointRoute] = {}

    def changed(self) -> None:
        """The store changed (an API write committed): reload at the next pass.
        Safe from any thread."""
        with self._lock:
            self._generation += 1

    def routes(
        self, source: IdleSource, tokens: Mapping[str, frozenset[str]]
    ) -> Mapping[str, EndpointRoute]:
        """The entries, read from ``source`` only when they may be out of date.

        The generation is read before reading: a change committed meanwhile bumps it
        again, so it is picked up by the next pass, never lost.
        """
        with self._lock:
            generation = self._generation
        now = self._monotonic()
        changed: dict[str, IdleEndpoint | None] = {}
        stale = generation != self._loaded_generation
        if (
            self._loaded_generation == 0
            or now - self._loaded_at >= self.refresh_s
            or (
                stale and self._seen is None  # the store had no endpoint: nothing to go by
            )
        ):
            self._seen = source.last_update()  # first: a write meanwhile is read again
            self._rows = {idle.service_id: idle for idle in source.list_idle()}
            self._loaded_generation, self._loaded_at = generation, now
            self._tokens = None
        elif stale and self._seen is not None:
            for change in source.idle_changes(self._seen - LATE_COMMIT):
                changed[change.service_id] = change.idle
                self._seen = max(self._seen, change.updated_at)
            self._loaded_generation = generation
        if self._tokens is None or tokens != self._tokens:
            self._routes = {
                service_id: idle.route(tokens) for service_id, idle in self._rows.items()
            }
            self._tokens = tokens
        for service_id, idle in changed.items():
            if idle is None:
                self._rows.pop(service_id, None)
                self._routes.pop(service_id, None)
            else:
                self._rows[service_id] = idle
                self._routes[service_id] = idle.route(tokens)
        return self._routes
