"""Which GPUs each waiting replica gets: a pure function of free GPUs and requests.

Requests are served strictly in order (oldest first): when the oldest cannot be
placed, no later one is, so a replica asking for 4 GPUs is not starved by a
stream of 1-GPU replicas that keep taking each GPU as it frees. A replica's GPUs
are all on one node; among nodes that fit, the one with the fewest free GPUs is
chosen (best fit), so large requests keep whole nodes to land on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from moorage.models.gpus import Gpu

__all__ = [
    "WAITING_FOR_CAPACITY",
    "GpuRequest",
    "Placement",
    "most_replicas",
    "place",
    "waiting_for_capacity",
]


@dataclass(frozen=True)
class GpuRequest:
    """One replica waiting for ``count`` GPUs; ``key`` names it in the answer."""

    key: str
    count: int


@dataclass(frozen=True)
class Placement:
    node: str
    gpus: tuple[Gpu, ...]

    @property
    def uuids(self) -> tuple[str, ...]:
        return tuple(g.uuid for g in self.gpus)


def place(
    free: Mapping[str, Sequence[Gpu]], requests: Sequence[GpuRequest]
) -> dict[str, Placement]:
    """Places ``requests`` in order on the ``free`` GPUs of each node; stops at the
    first that does not fit. Answers the placed ones by key."""
    left = {node: sorted(gpus) for node, gpus in free.items()}
    placed: dict[str, Placement] = {}
    for request in requests:
        fitting = [node for node, gpus in left.items() if len(gpus) >= request.count]
        if request.count <= 0 or not fitting:
            break
        node = min(fitting, key=lambda n: (len(left[n]), n))
        taken, left[node] = left[node][: request.count], left[node][request.count :]
        placed[request.key] = Placement(node, tuple(taken))
    return placed


def most_replicas(gpus: Sequence[Gpu], gpu_num: int) -> int:
    """How many replicas of ``gpu_num`` GPUs each these GPUs hold at once, at most."""
    if gpu_num <= 0:
        return 0
    return sum(count // gpu_num for count in Counter(g.node for g in gpus).values())


# A replica waiting for GPUs to free says so as its progress (its endpoint's
# status_info while it is the first replica not ready).
WAITING_FOR_CAPACITY = "waiting for capacity"


def waiting_for_capacity(placed: int, wanted: int) -> str:
    """``waiting for capacity: 2 of 3 replicas placed`` (docs/gpus.md)."""
    return f"{WAITING_FOR_CAPACITY}: {min(placed, wanted)} of {wanted} replicas placed"
