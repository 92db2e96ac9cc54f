"""The route table as the store says it, for gateways that long-poll the API.

Built from the store, not taken from the controller's memory, so a process that
serves the API without running the controller answers ``/v1/gateway/routes``
just as well. A table is built only while some gateway asks, at most once per
``max_age_s`` however many gateways wait, and shared by them all. A build costs
in proportion to what is active: endpoints that want no replicas (stopped, or
scaled to 0) are reloaded only when the newest ``updated_at`` of any endpoint
or the set of live tokens moved (or every ``IDLE_REFRESH_S``, a safety net),
and the JSON is recomputed only when the table differs from the last one.

Replicas going away: the store stops calling a replica ready before the
controller stops it (a drained replica is recorded ``unready`` first; one
marked failed has already exited), so a table built from the store never sends
a gateway to a replica being stopped. Where the controller runs in this same
process it takes replicas out of its own table a moment earlier, before that
record is written; ``local`` is that table, and a replica it no longer routes
to is left out here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from moorage.routing.codec import table_to_json
from moorage.routing.holder import RouteTableHolder
from moorage.routing.table import EndpointRoute, RouteTable, build_route_table
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.replicas import ReplicaRepository

IDLE_REFRESH_S = 60.0


@dataclass(frozen=True)
class _IdleMark:
    """What the idle entries were loaded at: reload when either moves."""

    last_update: datetime | None
    tokens: Mapping[str, frozenset[str]]


def replica_ids(table: RouteTable) -> frozenset[str]:
    return frozenset(r.replica_id for route in table.endpoints.values() for r in route.replicas)


def served(stored: RouteTable, local: RouteTable | None) -> RouteTable:
    """The store's table, less the replicas a local controller has taken out of its own."""
    if local is None:
        return stored
    gone = replica_ids(stored) - replica_ids(local)
    return stored.without(gone) if gone else stored


class RouteFeed:
    """The current table as JSON (``version`` included), rebuilt when it may be stale.

    ``max_age_s`` bounds how late a change made elsewhere (another process's
    controller, a token revoked) reaches gateways; a swap of the ``local`` table
    rebuilds at once.
    """

    def __init__(
        self,
        db: Database,
        *,
        max_age_s: float,
        local: RouteTableHolder | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        crash_loop_threshold: int = 3,
    ) -> None:
        self.crash_loop_threshold = crash_loop_threshold
        self.db = db
        self.max_age_s = max_age_s
        self.local = local
        self._monotonic = monotonic
        self._body: dict[str, Any] | None = None
        self._table: RouteTable | None = None
        self._idle: dict[str, EndpointRoute] = {}
        self._idle_mark: _IdleMark | None = None
        self._idle_at = 0.0
        self._built_at = 0.0
        self._stale = True
        self._building = asyncio.Lock()
        self._hint: asyncio.Event | None = None
        if local is not None:
            local.on_swap(self._local_swapped)

    def _local_swapped(self) -> None:
        self._stale = True
        if self._hint is not None:
            self._hint.set()

    def _load(self) -> RouteTable:
        with self.db.session() as session:
            repository = EndpointRepository(session)
            tokens = AccountRepository(session).active_token_hashes()
            # Read before the rows: a write landing in between is seen again next time.
            mark = _IdleMark(repository.last_update(), tokens)
            now = self._monotonic()
            if mark != self._idle_mark or now - self._idle_at >= IDLE_REFRESH_S:
                # Entries only so the gateway says "stopped" (503), not "no such
                # endpoint" (404).
                self._idle = {
                    idle.service_id: idle.route(tokens) for idle in repository.list_idle()
                }
                self._idle_mark, self._idle_at = mark, now
            replicas = ReplicaRepository(session).live()
            active = {e.service_id: e for e in repository.list_wanting_replicas()}
            # Stopped or deleted endpoints whose replicas still run: their entries say so.
            missing = sorted({r.endpoint_id for r in replicas} - active.keys())
            for endpoint in repository.get_many(missing):
                active[endpoint.service_id] = endpoint
        built = build_route_table(
            list(active.values()), replicas, tokens, self.crash_loop_threshold
        )
        routes = MappingProxyType({**self._idle, **built.endpoints})
        return RouteTable(routes, built.known_token_hashes)

    async def current(self) -> dict[str, Any]:
        """The table, rebuilt first if older than ``max_age_s`` or the local one changed.

        One build at a time: gateways that ask meanwhile get its result.
        """
        async with self._building:
            age = self._monotonic() - self._built_at
            if self._body is None or self._stale or age >= self.max_age_s:
                self._stale = False
                self._built_at = self._monotonic()
                stored = await asyncio.to_thread(self._load)
                local = self.local.current if self.local is not None else None
                table = served(stored, local)
                if self._body is None or table != self._table:
                    self._table, self._body = table, table_to_json(table)
            return self._body

    async def changed_from(self, version: str | None, wait_s: float) -> dict[str, Any]:
        """The table as soon as its version differs from ``version``, or after ``wait_s``
        seconds with the same one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        body = await self.current()
        while body["version"] == version and (remaining := deadline - loop.time()) > 0:
            if not self._stale:  # a swap during the build above is not waited for
                if self._hint is None or self._hint.is_set():
                    self._hint = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hint.wait(), min(remaining, self.max_age_s))
            body = await self.current()
        return body
