"""Load-balancing policies, registered by name so they can be chosen per endpoint and
compared in benchmarks. A policy only picks among replicas that have room; caps,
queueing and in-flight bookkeeping live in the dispatcher."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import Protocol

from moorage.models.states import PolicyName
from moorage.routing.table import ReplicaRoute

InFlight = Callable[[str], int]


class Policy(Protocol):
    def choose(self, candidates: Sequence[ReplicaRoute], in_flight: InFlight) -> ReplicaRoute:
        """One of ``candidates`` (never empty)."""
        ...


PolicyFactory = Callable[[random.Random], Policy]
_REGISTRY: dict[PolicyName, PolicyFactory] = {}
DEFAULT_POLICY = PolicyName.LEAST_OUTSTANDING


def register(name: PolicyName) -> Callable[[PolicyFactory], PolicyFactory]:
    def add(factory: PolicyFactory) -> PolicyFactory:
        _REGISTRY[name] = factory
        return factory

    return add


def policy_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def make_policy(name: str, rng: random.Random) -> Policy:
    try:
        return _REGISTRY[PolicyName(name)](rng)
    except (KeyError, ValueError):
        choices = ", ".join(policy_names())
        raise ValueError(f"unknown policy {name!r}; choose one of {choices}") from None


@register(PolicyName.ROUND_ROBIN)
class RoundRobin:
    """Each replica in turn, whatever it is doing: the baseline to beat."""

    def __init__(self, rng: random.Random) -> None:
        self._turn = itertools.count()

    def choose(self, candidates: Sequence[ReplicaRoute], in_flight: InFlight) -> ReplicaRoute:
        return candidates[next(self._turn) % len(candidates)]


@register(PolicyName.LEAST_OUTSTANDING)
class LeastOutstanding:
    """The replica with the fewest requests in flight; ties broken at random so idle
    replicas share the load instead of the first one taking it all."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def choose(self, candidates: Sequence[ReplicaRoute], in_flight: InFlight) -> ReplicaRoute:
        fewest = min(in_flight(r.replica_id) for r in candidates)
        tied = [r for r in candidates if in_flight(r.replica_id) == fewest]
        return tied[0] if len(tied) == 1 else self._rng.choice(tied)


@register(PolicyName.POWER_OF_TWO)
class PowerOfTwo:
    """Two replicas at random, the less loaded of them: near least-outstanding with
    O(1) work, and no herd on one replica when counts are stale."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def choose(self, candidates: Sequence[ReplicaRoute], in_flight: InFlight) -> ReplicaRoute:
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._rng.sample(list(candidates), 2)
        return first if in_flight(first.replica_id) <= in_flight(second.replica_id) else second
