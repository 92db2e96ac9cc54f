"""``plan`` during a rollout on a GPU flavor with no GPU to spare: it stops one old
replica at a time so the new revision's waiting replicas get GPUs, and only when
that cannot strand the endpoint with nothing serving."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta

from moorage.controller.plan import Action, PlanPolicy, StopReplica, plan
from moorage.models.endpoints import DeploySpec
from moorage.models.placement import waiting_for_capacity
from moorage.models.replicas import Replica, ReplicaState
from moorage.runtimes.base import Observed
from tests.unit.builders import T0, make_endpoint, make_replica

ENDPOINT = dataclasses.replace(
    make_endpoint(target=2, revision=2),
    deploy=DeploySpec(image_url="local", command="serve", port=8000, gpu_num=1),
)
FLAVOR = ENDPOINT.flavor_id


def old(replica_id: str, seconds: int) -> Replica:
    return make_replica(replica_id, revision=1, since=T0 + timedelta(seconds=seconds))


def waiting(replica_id: str) -> Replica:
    replica = make_replica(replica_id, revision=2, state=ReplicaState.REQUESTED)
    return dataclasses.replace(replica, progress=waiting_for_capacity(0, 2))


def stops(replicas: Sequence[Replica], free: int) -> list[str]:
    observed = {
        r.replica_id: Observed(r.replica_id, r.endpoint_id, r.revision, r.address, True)
        for r in replicas
        if r.state.has_process
    }
    actions: list[Action] = plan(
        [ENDPOINT],
        replicas,
        observed,
        {},
        T0 + timedelta(seconds=5),
        PlanPolicy(),
        free_gpus={FLAVOR: free},
    )
    return [a.replica.replica_id for a in actions if isinstance(a, StopReplica)]


def test_the_oldest_old_replica_makes_room_when_no_gpu_is_free() -> None:
    assert stops([old("o-young", 2), old("o-old", 1), waiting("n1"), waiting("n2")], 0) == ["o-old"]


def test_nothing_is_stopped_while_a_gpu_is_free_to_place() -> None:
    assert stops([old("o1", 1), old("o2", 2), waiting("n1"), waiting("n2")], 1) == []


def test_nothing_is_stopped_while_a_placed_new_replica_is_not_serving_yet() -> None:
    starting = make_replica("n1", revision=2, state=ReplicaState.STARTING)

    assert stops([old("o2", 2), starting, waiting("n2")], 0) == []


def test_nothing_is_stopped_when_no_new_replica_waits_for_capacity() -> None:
    pulling = dataclasses.replace(
        make_replica("n1", revision=2, state=ReplicaState.REQUESTED), progress="pulling 40%"
    )

    assert stops([old("o1", 1), old("o2", 2), pulling], 0) == []
