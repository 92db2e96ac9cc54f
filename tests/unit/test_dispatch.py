"""Admission to replicas: per-replica caps, policies by name, a bounded FIFO queue, and
in-flight counts that stay exact on every path."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter

import pytest

from moorage.gateway.dispatch import (
    CannotStart,
    Dispatcher,
    EndpointGone,
    Overloaded,
    QueueTimedOut,
)
from moorage.gateway.policies import make_policy, policy_names
from moorage.models.demand import EndpointDemand
from moorage.models.endpoints import GatewaySettings
from moorage.models.states import DesiredState, PolicyName
from moorage.routing.table import EndpointRoute, ReplicaRoute

REPLICAS = (ReplicaRoute("a", "127.0.0.1:1"), ReplicaRoute("b", "127.0.0.1:2"))


def route(**admission: object) -> EndpointRoute:
    settings = GatewaySettings(**admission)  # type: ignore[arg-type]
    return EndpointRoute("ep", frozenset(), REPLICAS, DesiredState.RUNNING, settings)


def dispatcher_for(current: EndpointRoute) -> Dispatcher:
    return Dispatcher(lambda _service_id: current, random.Random(7))


def test_the_three_policies_are_registered_by_name() -> None:
    assert set(policy_names()) >= {"round_robin", "least_outstanding", "power_of_two"}
    with pytest.raises(ValueError, match="round_robin"):
        make_policy("fastest", random.Random())


def test_round_robin_alternates_whatever_the_load() -> None:
    policy = make_policy("round_robin", random.Random())
    picks = [policy.choose(REPLICAS, lambda r: 100 if r == "a" else 0).replica_id for _ in range(4)]
    assert picks == ["a", "b", "a", "b"]


@pytest.mark.parametrize("name", ["least_outstanding", "power_of_two"])
def test_load_aware_policies_avoid_the_busy_replica(name: str) -> None:
    policy = make_policy(name, random.Random(1))
    picks = Counter(
        policy.choose(REPLICAS, lambda r: 5 if r == "a" else 0).replica_id for _ in range(50)
    )
    assert picks == {"b": 50}


async def _hold(dispatcher: Dispatcher, current: EndpointRoute, release: asyncio.Event) -> str:
    async with dispatcher.lease(current) as lease:
        await release.wait()
        return lease.replica.replica_id


@pytest.mark.anyio
async def test_requests_past_the_cap_wait_in_order_and_get_freed_slots() -> None:
    current = route(max_concurrency=1, max_queue=5)
    dispatcher = dispatcher_for(current)
    gates = [asyncio.Event() for _ in range(4)]
    tasks = [asyncio.create_task(_hold(dispatcher, current, g)) for g in gates]
    await asyncio.sleep(0)
    assert dispatcher.in_flight("a") == dispatcher.in_flight("b") == 1
    assert dispatcher.queue_length("ep") == 2

    gates[0].set()
    first = await tasks[0]
    await asyncio.sleep(0)
    assert dispatcher.queue_length("ep") == 1  # the oldest waiter took the freed slot
    assert dispatcher.in_flight(first) == 1
    for gate in gates[1:]:
        gate.set()
    await asyncio.gather(*tasks)
    assert dispatcher.in_flight("a") == dispatcher.in_flight("b") == 0
    assert dispatcher.queue_length("ep") == 0


@pytest.mark.anyio
async def test_a_full_queue_refuses_at_once() -> None:
    current = route(max_concurrency=1, max_queue=1)
    dispatcher = dispatcher_for(current)
    release = asyncio.Event()
    holders = [asyncio.create_task(_hold(dispatcher, current, release)) for _ in range(3)]
    await asyncio.sleep(0)

    with pytest.raises(Overloaded) as refused:
        async with dispatcher.lease(current):
            pass
    assert refused.value.retry_after_s >= 1
    release.set()
    await asyncio.gather(*holders)
    assert dispatcher.in_flight("a") == dispatcher.in_flight("b") == 0


@pytest.mark.anyio
async def test_a_wait_past_the_queue_timeout_gives_up_and_leaves_the_queue() -> None:
    current = route(max_concurrency=1, max_queue=5, queue_timeout_s=0.05)
    dispatcher = dispatcher_for(current)
    release = asyncio.Event()
    holders = [asyncio.create_task(_hold(dispatcher, current, release)) for _ in range(2)]
    await asyncio.sleep(0)

    with pytest.raises(QueueTimedOut):
        async with dispatcher.lease(current):
            pass
    assert dispatcher.queue_length("ep") == 0
    release.set()
    await asyncio.gather(*holders)
    assert dispatcher.in_flight("a") == dispatcher.in_flight("b") == 0


@pytest.mark.anyio
async def test_counts_stay_exact_when_requests_fail_or_are_cancelled() -> None:
    current = route(max_concurrency=1, max_queue=10)
    dispatcher = dispatcher_for(current)
    release = asyncio.Event()
    holders = [asyncio.create_task(_hold(dispatcher, current, release)) for _ in range(2)]
    waiters = [asyncio.create_task(_hold(dispatcher, current, release)) for _ in range(3)]
    await asyncio.sleep(0)
    for waiter in waiters:
        waiter.cancel()  # clients that went away while queued
    await asyncio.gather(*waiters, return_exceptions=True)
    assert dispatcher.queue_length("ep") == 0

    async def failing() -> None:
        async with dispatcher.lease(current):
            raise ConnectionResetError

    release.set()
    await asyncio.gather(*holders)
    with pytest.raises(ConnectionResetError):
        await failing()
    assert dispatcher.in_flight("a") == dispatcher.in_flight("b") == 0


@pytest.mark.anyio
async def test_new_replicas_take_waiting_requests() -> None:
    current = EndpointRoute(
        "ep", frozenset(), REPLICAS[:1], DesiredState.RUNNING, GatewaySettings(max_concurrency=1)
    )
    routes = {"ep": current}
    dispatcher = Dispatcher(routes.get, random.Random(3))
    release = asyncio.Event()
    holder = asyncio.create_task(_hold(dispatcher, current, release))
    waiter = asyncio.create_task(_hold(dispatcher, current, release))
    await asyncio.sleep(0)
    assert dispatcher.queue_length("ep") == 1

    routes["ep"] = EndpointRoute(
        "ep", frozenset(), REPLICAS, DesiredState.RUNNING, current.admission
    )
    dispatcher.routes_changed()
    await asyncio.sleep(0)
    assert dispatcher.queue_length("ep") == 0
    assert dispatcher.in_flight("b") == 1
    release.set()
    assert sorted(await asyncio.gather(holder, waiter)) == ["a", "b"]


def test_the_api_offers_exactly_the_registered_policies() -> None:
    assert set(policy_names()) == {str(name) for name in PolicyName}


@pytest.mark.anyio
async def test_a_slot_is_free_as_soon_as_the_replica_is_done() -> None:
    current = route(max_concurrency=1, max_queue=0)
    dispatcher = dispatcher_for(current)
    async with dispatcher.lease(current) as lease:
        lease.release()  # the response is read; the client is still being written to
        lease.release()
        assert dispatcher.in_flight(lease.replica.replica_id) == 0
        async with dispatcher.lease(current) as second:
            assert dispatcher.in_flight(second.replica.replica_id) == 1
    assert dispatcher.in_flight("a") == dispatcher.in_flight("b") == 0


def test_a_retry_skips_the_replicas_it_already_tried() -> None:
    current = route()
    dispatcher = dispatcher_for(current)
    first = dispatcher.try_acquire(current)
    assert first is not None
    retry = dispatcher.try_acquire(current, exclude=frozenset({first.replica.replica_id}))
    assert retry is not None
    assert retry.replica.replica_id != first.replica.replica_id
    assert dispatcher.try_acquire(current, exclude=frozenset({"a", "b"})) is None
    first.release()
    retry.release()
    assert dispatcher.in_flight("a") == dispatcher.in_flight("b") == 0


def test_try_acquire_never_jumps_the_queue() -> None:
    async def scenario() -> None:
        current = route(max_concurrency=1, max_queue=5, queue_timeout_s=5)
        dispatcher = dispatcher_for(current)
        held = [dispatcher.try_acquire(current), dispatcher.try_acquire(current)]
        waiter = asyncio.ensure_future(dispatcher.acquire(current))
        await asyncio.sleep(0)
        assert dispatcher.queue_length("ep") == 1
        assert dispatcher.try_acquire(current) is None  # the waiter came first
        lease = held[0]
        assert lease is not None
        lease.release()
        handed = await waiter
        assert handed.replica.replica_id == lease.replica.replica_id
        handed.release()
        for other in held[1:]:
            assert other is not None
            other.release()
        assert dispatcher.in_flight("a") == dispatcher.in_flight("b") == 0

    asyncio.run(scenario())


@pytest.mark.anyio
async def test_a_request_held_at_zero_replicas_is_served_by_the_first_that_comes() -> None:
    empty = dataclasses.replace(route(queue_timeout_s=0.05), replicas=(), scales_from_zero=True)
    table = {"now": empty}
    dispatcher = Dispatcher(lambda _service_id: table["now"], random.Random(7))

    held = asyncio.ensure_future(dispatcher.acquire(empty, timeout_s=5))
    await asyncio.sleep(0.1)  # past the queue timeout: the cold-start one holds it
    assert not held.done()
    assert dispatcher.snapshot().queued == {"ep": 1}

    table["now"] = dataclasses.replace(empty, replicas=REPLICAS[:1])
    dispatcher.routes_changed()
    lease = await asyncio.wait_for(held, 1)
    assert lease.replica.replica_id == "a"
    lease.release()


@pytest.mark.anyio
@pytest.mark.parametrize("stopped", [True, False])
async def test_requests_held_for_a_stopped_or_deleted_endpoint_are_told_at_once(
    stopped: bool,
) -> None:
    empty = dataclasses.replace(route(), replicas=(), scales_from_zero=True)
    table: dict[str, EndpointRoute | None] = {"now": empty}
    dispatcher = Dispatcher(lambda _service_id: table["now"], random.Random(7))
    held = [asyncio.ensure_future(dispatcher.acquire(empty, timeout_s=30)) for _ in range(2)]
    await asyncio.sleep(0)

    table["now"] = dataclasses.replace(empty, status_hint=DesiredState.STOPPED) if stopped else None
    dispatcher.routes_changed()

    for waiter in held:
        with pytest.raises(EndpointGone) as gone:
            await asyncio.wait_for(waiter, 1)
        assert gone.value.stopped is stopped
    assert dispatcher.snapshot().queued == {}


@pytest.mark.anyio
async def test_request_seconds_count_short_requests_a_look_at_one_instant_misses() -> None:
    clock = {"now": 100.0}
    current = dataclasses.replace(route(max_concurrency=1, max_queue=5), replicas=REPLICAS[:1])
    dispatcher = Dispatcher(lambda _service_id: current, random.Random(7), lambda: clock["now"])

    for _ in range(10):  # ten requests of 10 ms, one every second
        lease = await dispatcher.acquire(current)
        clock["now"] += 0.01
        lease.release()
        clock["now"] += 0.99
        assert dispatcher.snapshot().in_flight == {}, "a look between requests sees none"

    first = await dispatcher.acquire(current)
    waiting = asyncio.ensure_future(dispatcher.acquire(current))
    await asyncio.sleep(0)
    clock["now"] += 2.0  # one in flight and one waiting for 2 s
    first.release()
    (await waiting).release()

    demand = dispatcher.snapshot().demand().of("ep")
    assert demand.busy_s == pytest.approx(10 * 0.01 + 2.0)
    assert demand.waited_s == pytest.approx(2.0)


def test_requests_held_at_zero_are_counted_even_if_they_give_up() -> None:
    dispatcher = dispatcher_for(route())
    dispatcher.held("ep")
    dispatcher.held("ep")
    assert dispatcher.snapshot().demand().of("ep").held == 2


@pytest.mark.anyio
async def test_requests_held_for_an_endpoint_that_cannot_start_are_told_why() -> None:
    empty = dataclasses.replace(route(), replicas=(), scales_from_zero=True)
    table = {"now": empty}
    dispatcher = Dispatcher(lambda _service_id: table["now"], random.Random(7))
    held = asyncio.ensure_future(dispatcher.acquire(empty, timeout_s=30))
    await asyncio.sleep(0)

    table["now"] = dataclasses.replace(empty, cannot_start="its replica failed 3 times")
    dispatcher.routes_changed()

    with pytest.raises(CannotStart, match="failed 3 times"):
        await asyncio.wait_for(held, 1)


def test_responses_are_counted_with_their_errors_and_latency() -> None:
    dispatcher = dispatcher_for(route())
    dispatcher.answered("ep", 200, 0.25)
    dispatcher.answered("ep", 404, 0.5)  # the replica's answer, not a failure
    dispatcher.answered("ep", 500, 1.0)
    dispatcher.answered("ep", 503, 2.0)  # a refusal of the gateway's own
    seen = dispatcher.snapshot().demand().of("ep")
    assert (seen.answered, seen.errors) == (4, 2)
    assert seen.latency_s == pytest.approx(3.75)


def test_an_endpoint_gone_from_the_table_stops_being_counted() -> None:
    table: dict[str, EndpointRoute | None] = {"now": route()}
    dispatcher = Dispatcher(lambda _service_id: table["now"], random.Random(7))
    dispatcher.arrived("ep")
    dispatcher.answered("ep", 502, 0.1)
    table["now"] = None
    dispatcher.routes_changed()
    assert dispatcher.snapshot().demand().of("ep") == EndpointDemand()
