"""Least-outstanding-requests balancing and its in-flight bookkeeping."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from contextlib import ExitStack

import pytest

from moorage.gateway.balancer import LeastOutstanding
from moorage.gateway.routes import ReplicaRoute

A = ReplicaRoute("a", "127.0.0.1:9001")
B = ReplicaRoute("b", "127.0.0.1:9002")
C = ReplicaRoute("c", "127.0.0.1:9003")
ALL = (A, B, C)


def balancer(seed: int = 7) -> LeastOutstanding:
    return LeastOutstanding(random.Random(seed))


def test_replica_never_leased_has_nothing_in_flight() -> None:
    assert balancer().in_flight("a") == 0


def test_lease_counts_the_request_while_it_is_in_flight() -> None:
    lb = balancer()

    with lb.lease([A]) as chosen:
        assert chosen == A
        assert lb.in_flight("a") == 1


def test_picks_the_replica_with_fewest_requests_in_flight() -> None:
    lb = balancer()
    with ExitStack() as held:
        held.enter_context(lb.lease([A]))
        held.enter_context(lb.lease([A]))
        held.enter_context(lb.lease([C]))

        assert lb.choose(ALL) == B


def test_successive_leases_fill_idle_replicas_before_doubling_up() -> None:
    lb = balancer()
    with ExitStack() as held:
        first_three = [held.enter_context(lb.lease(ALL)) for _ in range(3)]
        fourth = held.enter_context(lb.lease(ALL))

        assert sorted(r.replica_id for r in first_three) == ["a", "b", "c"]
        assert [lb.in_flight(r.replica_id) for r in ALL].count(2) == 1
        assert lb.in_flight(fourth.replica_id) == 2


def test_chooses_among_the_given_replicas_only_even_when_they_are_busier() -> None:
    lb = balancer()
    with lb.lease([A]), lb.lease([A]):
        picks = {lb.choose([A]).replica_id for _ in range(20)}

    assert picks == {"a"}


def test_ties_are_spread_across_idle_replicas() -> None:
    lb = balancer(seed=1234)

    picks = Counter(lb.choose(ALL).replica_id for _ in range(3000))

    assert set(picks) == {"a", "b", "c"}
    assert min(picks.values()) > 800


def test_tie_breaking_uses_the_random_source_it_was_given() -> None:
    lb1, lb2 = balancer(seed=5), balancer(seed=5)

    assert [lb1.choose(ALL) for _ in range(50)] == [lb2.choose(ALL) for _ in range(50)]


def test_count_returns_to_zero_after_the_request_completes() -> None:
    lb = balancer()

    with lb.lease(ALL) as chosen:
        pass

    assert lb.in_flight(chosen.replica_id) == 0
    assert all(lb.in_flight(r.replica_id) == 0 for r in ALL)


def test_count_returns_to_zero_when_the_request_fails() -> None:
    lb = balancer()
    leased: list[ReplicaRoute] = []

    def forward() -> None:
        with lb.lease(ALL) as chosen:
            leased.append(chosen)
            assert lb.in_flight(chosen.replica_id) == 1
            raise ConnectionResetError("replica reset the connection")

    with pytest.raises(ConnectionResetError):
        forward()

    assert lb.in_flight(leased[0].replica_id) == 0


def test_count_returns_to_zero_when_the_request_is_cancelled() -> None:
    lb = balancer()
    entered = asyncio.Event()

    async def forward() -> None:
        with lb.lease([A]):
            entered.set()
            await asyncio.sleep(3600)

    async def client_goes_away() -> None:
        task = asyncio.create_task(forward())
        await entered.wait()
        assert lb.in_flight("a") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(client_goes_away())

    assert lb.in_flight("a") == 0


def test_a_failed_request_does_not_skew_later_choices() -> None:
    lb = balancer()
    for _ in range(5):
        with pytest.raises(TimeoutError), lb.lease([A]):
            raise TimeoutError

    with lb.lease([B]):
        assert lb.choose([A, B]) == A


def test_nested_leases_on_one_replica_unwind_one_at_a_time() -> None:
    lb = balancer()

    with lb.lease([A]):
        with lb.lease([A]):
            assert lb.in_flight("a") == 2
        assert lb.in_flight("a") == 1
    assert lb.in_flight("a") == 0


def test_count_never_goes_negative_over_many_mixed_outcomes() -> None:
    lb = balancer()
    rng = random.Random(99)

    for _ in range(200):
        try:
            with lb.lease(ALL):
                if rng.random() < 0.5:
                    raise RuntimeError("upstream error")
        except RuntimeError:
            pass
        assert all(lb.in_flight(r.replica_id) >= 0 for r in ALL)

    assert [lb.in_flight(r.replica_id) for r in ALL] == [0, 0, 0]
