"""A rollout's surge stays within its owner's ``flavor_share``: the reconciler in
process on the fake runtime, a declared 4-GPU flavor (one node), a normal user's
share of 2 GPUs.

A user holding her whole share changes her endpoint to a command that never
answers (with a day to start): the rollout replaces her replica one at a time, so
she never holds more than 2 GPUs, another user within his share is placed, and a
repeated change replaces the starting replica instead of adding one more."""

from __future__ import annotations

import dataclasses

import pytest

from moorage.models.events import RecordedEvent
from moorage.models.flavors import Flavor
from moorage.models.gpus import Gpu
from moorage.models.replicas import ReplicaEventKind, ReplicaState
from moorage.runtimes.base import Launch
from moorage.runtimes.fake import Behavior
from moorage.services.quotas import Quotas
from moorage.store.accounts import AccountRepository
from moorage.store.endpoints import EndpointRepository
from moorage.store.flavors import FlavorRepository
from moorage.store.gpus import GpuAllocationRepository
from tests.integration.test_gpu_allocation import add
from tests.integration.test_reconciler import Control, MakeControl, make_control
from tests.unit.builders import T0

pytestmark = pytest.mark.anyio
__all__ = ["make_control"]  # the fixture, used by name

QUOTA_GPU = Flavor(
    flavor_id="c" * 32,
    display_name="QUOTA_GPU",
    cluster_id="1",
    cluster_flavor_id="quota",
    capacity=4,
    node_max_gpu=4,
    gpus=tuple(Gpu("local", i, f"GPU-q-{i}") for i in range(4)),
)
QUOTAS = Quotas(
    endpoints=20,
    replicas=16,
    flavor_share=0.5,
    command_bytes=16 * 1024,
    env_vars=64,
    env_bytes=32 * 1024,
    name_chars=100,
    description_chars=1024,
    log_followers=4,
    secrets=16,
)
NEVER_READY = "sleep 100001"


def script(launch: Launch) -> Behavior:
    return Behavior(answers=launch.deploy.command != NEVER_READY)


def gpus_by_endpoint(control: Control) -> dict[str, int]:
    with control.db.session() as session:
        held = dict(GpuAllocationRepository(session).all())
    owner = {r.replica_id: r.endpoint_id for r in control.replicas()}
    counts: dict[str, int] = {}
    for replica_id in held.values():
        endpoint_id = owner.get(replica_id, "(finished)")
        counts[endpoint_id] = counts.get(endpoint_id, 0) + 1
    return counts


async def test_a_rollout_at_the_share_replaces_one_replica_at_a_time(
    make_control: MakeControl,
) -> None:
    control = make_control(script, ready_timeout_s=86400.0)
    control.reconciler.quotas = QUOTAS
    with control.db.session() as session:
        FlavorRepository(session).sync([QUOTA_GPU], T0)
        bob = AccountRepository(session).create_user("bob", is_admin=False, now=T0)
    alices = add(control, QUOTA_GPU, target=1, gpu_num=2)
    await control.until(lambda: len(control.ready(alices.service_id)) == 1, "alice's pair")

    most = 0

    async def steps(n: int) -> None:
        nonlocal most
        for _ in range(n):
            await control.step()
            most = max(most, gpus_by_endpoint(control).get(alices.service_id, 0))

    changed = control.change_command(alices, NEVER_READY)
    await steps(8)
    (starting,) = control.replicas(alices.service_id)
    assert (starting.revision, starting.state) == (changed.revision, ReplicaState.STARTING)

    # Bob, within his share, is placed on the other two GPUs meanwhile.
    bobs = add(control, QUOTA_GPU, target=1, gpu_num=2)
    with control.db.session() as session:
        EndpointRepository(session).save(dataclasses.replace(bobs, user_id=bob.user_id))
    await control.until(lambda: len(control.ready(bobs.service_id)) == 1, "bob placed")

    # A repeated change replaces the replica still starting; it adds none.
    again = control.change_command(changed, NEVER_READY + " ")
    await steps(8)
    (latest,) = control.replicas(alices.service_id)
    assert latest.revision == again.revision
    assert most == 2, "alice never held more than her share of 2 GPUs"
    assert gpus_by_endpoint(control) == {alices.service_id: 2, bobs.service_id: 2}

    stopped = [
        e.event.detail
        for e in control.history(alices.service_id)
        if isinstance(e, RecordedEvent) and e.event.kind is ReplicaEventKind.STOPPED
    ]
    assert "rolling out one replica at a time: a surge would exceed your flavor_share" in stopped, (
        stopped
    )
