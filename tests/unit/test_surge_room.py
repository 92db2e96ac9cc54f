"""A rollout's surge stays within its owner's quotas: ``surge_room`` (what each owner
may still take) and what ``plan`` does with it: surge what fits, else replace one
replica at a time (the old one stops, then its successor is created)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import timedelta

from moorage.clock import FakeClock
from moorage.controller.plan import (
    Action,
    CreateReplica,
    PlanPolicy,
    StopReplica,
    plan,
)
from moorage.controller.surge_room import REPLICAS, HeldReplica, surge_room
from moorage.models.endpoints import DeploySpec, Endpoint
from moorage.models.replicas import Replica, ReplicaState
from moorage.services.quotas import FlavorUnits, Quotas
from tests.unit.builders import T0, all_running, make_endpoint, make_replica, of_type

GPU = "g" * 32
SLOTS = "f" * 32  # make_endpoint's flavor
QUOTAS = Quotas(
    endpoints=20,
    replicas=16,
    flavor_share=0.5,
    command_bytes=1024,
    env_vars=8,
    env_bytes=1024,
    name_chars=100,
    description_chars=100,
    log_followers=2,
    secrets=4,
)
FLAVORS = {
    GPU: FlavorUnits(GPU, "QUOTA_GPU", 4, gpus=True),
    SLOTS: FlavorUnits(SLOTS, "small", 4, gpus=False),
}


def on_gpus(endpoint: Endpoint, gpu_num: int) -> Endpoint:
    deploy = DeploySpec(image_url="local", command="serve", port=8000, gpu_num=gpu_num)
    return dataclasses.replace(endpoint, flavor_id=GPU, deploy=deploy)


def rolling_out(service_id: str = "ep-1", *, target: int = 1, gpu_num: int = 2) -> Endpoint:
    """An endpoint just changed to revision 2."""
    return on_gpus(make_endpoint(service_id, target=target, revision=2), gpu_num)


def run(
    endpoints: Sequence[Endpoint],
    replicas: Sequence[Replica],
    room: Mapping[tuple[str, str], int] | None,
    clock: FakeClock,
) -> list[Action]:
    return plan(
        endpoints,
        replicas,
        all_running(replicas),
        {},
        clock.now(),
        PlanPolicy(),
        free_gpus={GPU: 2},
        surge_room=room,
        gpu_flavors=frozenset({GPU}),
    )


def test_room_is_the_share_of_each_flavor_less_what_live_replicas_hold() -> None:
    held = [
        HeldReplica("alice", GPU, 2),  # old revision: 2 GPUs
        HeldReplica("alice", GPU, 1),  # new revision, narrower
        HeldReplica("alice", SLOTS, 0),
        HeldReplica("admin", GPU, 4),  # not bound: not counted
    ]
    room = surge_room({"alice": QUOTAS}, FLAVORS, held)
    assert room == {("alice", GPU): -1, ("alice", SLOTS): 1, ("alice", REPLICAS): 13}


def test_a_lowered_share_still_leaves_one_of_a_small_flavor() -> None:
    small = {GPU: FlavorUnits(GPU, "one", 1, gpus=True)}
    room = surge_room({"bob": dataclasses.replace(QUOTAS, flavor_share=0.1)}, small, [])
    assert room[("bob", GPU)] == 1


def test_a_surge_past_the_share_stops_an_old_replica_first() -> None:
    """The finding: 1 replica of gpu_num 2 under a 2-GPU share, then a new revision.
    No second replica is created beside the first; the old one goes, saying why."""
    clock = FakeClock(T0)
    old = make_replica("old", revision=1)
    actions = run([rolling_out()], [old], {("user-1", GPU): 0, ("user-1", REPLICAS): 15}, clock)

    assert of_type(actions, CreateReplica) == []
    (stop,) = of_type(actions, StopReplica)
    assert stop.replica == old
    assert stop.why == "rolling out one replica at a time: a surge would exceed your flavor_share"


def test_its_successor_is_created_once_the_old_one_has_stopped() -> None:
    clock = FakeClock(T0)
    clock.advance(5)
    actions = run([rolling_out()], [], {("user-1", GPU): 2}, clock)
    assert len(of_type(actions, CreateReplica)) == 1


def test_while_the_old_one_is_stopping_nothing_else_happens() -> None:
    clock = FakeClock(T0)
    going = make_replica("old", revision=1, state=ReplicaState.UNREADY)
    actions = run([rolling_out()], [going], {("user-1", GPU): 0}, clock)
    assert of_type(actions, CreateReplica) == []
    assert [a.replica.replica_id for a in of_type(actions, StopReplica)] == ["old"]


def test_the_next_old_replica_waits_until_the_new_one_serves() -> None:
    clock = FakeClock(T0)
    olds = [
        make_replica("old-a", revision=1, requested_at=T0),
        make_replica("old-b", revision=1, requested_at=T0 + timedelta(seconds=1)),
    ]
    starting = make_replica("new-a", revision=2, state=ReplicaState.STARTING)
    endpoint = rolling_out(target=2, gpu_num=1)
    room = {("user-1", GPU): 0}

    assert of_type(run([endpoint], [*olds, starting], room, clock), StopReplica) == []
    ready = dataclasses.replace(starting, state=ReplicaState.READY)
    (stop,) = of_type(run([endpoint], [*olds, ready], room, clock), StopReplica)
    assert stop.replica.replica_id == "old-a", "the oldest goes first"


def test_a_surge_within_the_share_runs_beside_the_old_replicas_as_before() -> None:
    clock = FakeClock(T0)
    old = make_replica("old", revision=1)
    actions = run([rolling_out(gpu_num=1)], [old], {("user-1", GPU): 1}, clock)
    assert len(of_type(actions, CreateReplica)) == 1
    assert of_type(actions, StopReplica) == []


def test_two_rollouts_of_one_owner_share_one_room() -> None:
    clock = FakeClock(T0)
    first, second = rolling_out("ep-1", gpu_num=1), rolling_out("ep-2", gpu_num=1)
    olds = [
        make_replica("old-1", endpoint_id="ep-1", revision=1),
        make_replica("old-2", endpoint_id="ep-2", revision=1),
    ]
    actions = run([first, second], olds, {("user-1", GPU): 1}, clock)
    assert [a.endpoint.service_id for a in of_type(actions, CreateReplica)] == ["ep-1"]
    assert [a.replica.replica_id for a in of_type(actions, StopReplica)] == ["old-2"]


def test_an_owner_without_a_room_entry_is_not_bound() -> None:
    clock = FakeClock(T0)
    old = make_replica("old", revision=1)
    unbound = run([rolling_out()], [old], {}, clock)
    assert len(of_type(unbound, CreateReplica)) == 1


def test_another_endpoint_of_an_owner_whose_surge_holds_her_share_waits() -> None:
    """A surge running within the share, then a new endpoint the API accepted (its
    target fits the share): its replica waits for the rollout rather than take the
    owner past her share."""
    clock = FakeClock(T0)
    rolling = rolling_out("ep-1", gpu_num=1)
    replicas = [
        make_replica("old", endpoint_id="ep-1", revision=1),
        make_replica("surge", endpoint_id="ep-1", revision=2, state=ReplicaState.STARTING),
    ]
    newer = on_gpus(make_endpoint("ep-2"), 1)
    actions = run([rolling, newer], replicas, {("user-1", GPU): 0}, clock)
    assert of_type(actions, CreateReplica) == []
    assert of_type(actions, StopReplica) == []


def test_a_surge_waiting_for_capacity_still_makes_room_one_at_a_time() -> None:
    """Half the surge fits the share and waits for a GPU others hold: the rollout
    still replaces an old replica once the placed new ones serve."""
    clock = FakeClock(T0)
    endpoint = rolling_out(target=2, gpu_num=1)
    olds = [make_replica(f"old-{i}", revision=1) for i in range(2)]
    waiting = dataclasses.replace(
        make_replica("new-a", revision=2, state=ReplicaState.REQUESTED),
        progress="waiting for capacity: 0 of 2 replicas placed",
    )
    actions = plan(
        [endpoint],
        [*olds, waiting],
        all_running(olds),
        {},
        clock.now(),
        PlanPolicy(),
        free_gpus={GPU: 0},
        surge_room={("user-1", GPU): 0},
        gpu_flavors=frozenset({GPU}),
    )
    assert of_type(actions, CreateReplica) == []
    (stop,) = of_type(actions, StopReplica)
    assert stop.why == "its GPUs go to a replica of the new revision"


def test_on_a_flavor_of_slots_the_share_and_the_replicas_quota_count_replicas() -> None:
    clock = FakeClock(T0)
    endpoint = make_endpoint(target=2, revision=2)
    olds = [make_replica(f"old-{i}", revision=1) for i in range(2)]

    by_share = run([endpoint], olds, {("user-1", SLOTS): 1, ("user-1", REPLICAS): 9}, clock)
    assert len(of_type(by_share, CreateReplica)) == 1, "one surge replica fits the share"

    by_replicas = run([endpoint], olds, {("user-1", SLOTS): 2, ("user-1", REPLICAS): 0}, clock)
    assert of_type(by_replicas, CreateReplica) == []
    (stop,) = of_type(by_replicas, StopReplica)
    assert stop.why.endswith("a surge would exceed your replicas quota")
