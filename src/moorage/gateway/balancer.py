"""Least-outstanding-requests balancing, with in-flight counts kept in one place.

``lease`` is the only way to pick a replica, and it decrements in ``finally``,
so the counts stay exact on every error path (client gone, replica reset,
cancellation).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from moorage.gateway.routes import ReplicaRoute


class LeastOutstanding:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._in_flight: dict[str, int] = {}
        self._rng = rng or random.Random()

    def in_flight(self, replica_id: str) -> int:
        return self._in_flight.get(replica_id, 0)

    def choose(self, replicas: Sequence[ReplicaRoute]) -> ReplicaRoute:
        """The replica with the fewest requests in flight; ties broken at random so
        idle replicas share the load instead of the first one taking it all."""
        fewest = min(self.in_flight(r.replica_id) for r in replicas)
        candidates = [r for r in replicas if self.in_flight(r.replica_id) == fewest]
        return candidates[0] if len(candidates) == 1 else self._rng.choice(candidates)

    @contextmanager
    def lease(self, replicas: Sequence[ReplicaRoute]) -> Iterator[ReplicaRoute]:
        replica = self.choose(replicas)
        self._in_flight[replica.replica_id] = self.in_flight(replica.replica_id) + 1
        try:
            yield replica
        finally:
            remaining = self._in_flight[replica.replica_id] - 1
            if remaining:
                self._in_flight[replica.replica_id] = remaining
            else:
                del self._in_flight[replica.replica_id]
