"""A user's limits, and what a flavor's share counts: plain values the services check
requests against and the controller keeps rollouts within."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

from moorage.settings import Settings

__all__ = ["FlavorUnits", "Quotas", "flavor_limit"]


@dataclass(frozen=True)
class Quotas:
    """One user's limits. ``flavor_share`` is a fraction of each flavor's capacity."""

    endpoints: int
    replicas: int
    flavor_share: float
    command_bytes: int
    env_vars: int
    env_bytes: int
    name_chars: int
    description_chars: int
    log_followers: int
    secrets: int

    @classmethod
    def defaults(cls, settings: Settings) -> Quotas:
        return cls(**{f.name: getattr(settings, f"quota_{f.name}") for f in fields(cls)})

    def with_overrides(self, overrides: Mapping[str, int | float]) -> Quotas:
        return dataclasses.replace(self, **overrides)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FlavorUnits:
    """What ``flavor_share`` counts on one flavor: GPUs where it has a GPU inventory
    (a replica holds gpu_num of them, so counting replicas would let one replica of
    gpu_num 4 take a whole 4-GPU flavor under a 0.5 share), replicas otherwise."""

    flavor_id: str
    name: str
    capacity: int
    gpus: bool

    @property
    def unit(self) -> str:
        return "GPUs" if self.gpus else "replicas"

    def of(self, replicas: int, gpu_num: int) -> int:
        """What ``replicas`` replicas of ``gpu_num`` GPUs each count for here."""
        return replicas * gpu_num if self.gpus else replicas


def flavor_limit(capacity: int, share: float) -> int:
    """Replicas (or GPUs) of a flavor one user may hold: a share of its capacity, at
    least one, so a small flavor stays usable by everyone."""
    return max(1, math.floor(capacity * share + 1e-9))
