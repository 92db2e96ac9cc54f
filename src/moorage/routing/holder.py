"""Where a process keeps its current route table; assignment is the atomic swap.

Request handlers read ``RouteTableHolder.current`` once per request, so a table
swap mid-request can never show them half of an update.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from moorage.routing.table import EndpointRoute, RouteTable


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
