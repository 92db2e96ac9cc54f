"""GPUs given one by one: a declared inventory of 4 GPUs of two models (no NVML),
the reconciler in process on the fake runtime, and the API's capacity answers.

What is checked is what a user or operator sees: which GPU UUIDs each replica was
started with, what the store says each replica holds, ``status_info`` while
replicas wait, ``available_num``, and the 400 for an ask no GPUs can hold.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from moorage.controller.gpu_placement import gpus_for
from moorage.errors import InvalidField
from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint, EndpointStatus
from moorage.models.flavors import Flavor
from moorage.models.gpus import Gpu
from moorage.models.replicas import ReplicaState
from moorage.models.requests import CreateEndpointRequest
from moorage.models.status import StatusPolicy
from moorage.runtimes.base import Launch, StartError
from moorage.runtimes.fake import Behavior
from moorage.runtimes.process import ProcessRuntime
from moorage.services.endpoints import EndpointService
from moorage.services.flavors import FlavorService
from moorage.store.accounts import AccountRepository
from moorage.store.endpoints import EndpointRepository
from moorage.store.flavors import FlavorRepository
from moorage.store.gpus import GpuAllocationRepository
from moorage.store.replicas import ReplicaRepository
from moorage.store.tables import GpuAllocationRow
from tests.integration.test_reconciler import Control, MakeControl, make_control
from tests.unit.builders import T0, make_endpoint

pytestmark = pytest.mark.anyio
__all__ = ["make_control"]  # the fixture, used by name

H100 = Flavor(
    flavor_id="a" * 32,
    display_name="NVIDIA_H100_80GB_HBM3",
    cluster_id="1",
    cluster_flavor_id="h100",
    capacity=2,
    node_max_gpu=2,
    gpus=(Gpu("local", 0, "GPU-h100-0"), Gpu("local", 1, "GPU-h100-1")),
)
L4 = Flavor(
    flavor_id="b" * 32,
    display_name="NVIDIA_L4",
    cluster_id="1",
    cluster_flavor_id="l4",
    capacity=2,
    node_max_gpu=1,
    gpus=(Gpu("n1", 0, "GPU-l4-0"), Gpu("n2", 0, "GPU-l4-1")),
)


def declare(control: Control) -> None:
    with control.db.session() as session:
        FlavorRepository(session).sync([H100, L4], T0)


def add(control: Control, flavor: Flavor, *, target: int, gpu_num: int = 1) -> Endpoint:
    endpoint = dataclasses.replace(
        make_endpoint(f"ep-{time.monotonic_ns()}"),
        user_id=control.user_id,
        flavor_id=flavor.flavor_id,
        target_instance_number=target,
        deploy=DeploySpec(image_url="local", command="serve", port=8000, gpu_num=gpu_num),
        created_at=control.clock.now(),
    )
    with control.db.session() as session:
        EndpointRepository(session).add(endpoint)
        EndpointRepository(session).add_revision(endpoint)
    control.clock.advance(1)
    return endpoint


def save(control: Control, endpoint: Endpoint, **changes: object) -> Endpoint:
    with control.db.session() as session:
        current = EndpointRepository(session).get_live(endpoint.service_id)
        assert current is not None
        updated = dataclasses.replace(current, **changes)  # type: ignore[arg-type]
        EndpointRepository(session).save(updated)
    return updated


def held(control: Control) -> dict[str, str]:
    """GPU UUID -> the replica holding it, as the store says."""
    with control.db.session() as session:
        return dict(GpuAllocationRepository(session).all())


def gpus_of(control: Control, endpoint: Endpoint) -> dict[str, tuple[str, ...]]:
    """Each live replica's GPUs, from the launches the runtime was given."""
    live = {r.replica_id for r in control.replicas(endpoint.service_id)}
    return {s.replica_id: s.gpus for s in control.runtime.starts if s.replica_id in live}


async def test_each_replica_is_started_on_its_own_gpus_of_its_flavor(
    make_control: MakeControl,
) -> None:
    control = make_control()
    declare(control)
    h100 = add(control, H100, target=2)
    l4 = add(control, L4, target=2)

    await control.until(
        lambda: len(control.ready(h100.service_id)) == 2 and len(control.ready(l4.service_id)) == 2,
        "four replicas ready",
    )

    on_h100, on_l4 = gpus_of(control, h100), gpus_of(control, l4)
    assert sorted(g for gs in on_h100.values() for g in gs) == ["GPU-h100-0", "GPU-h100-1"]
    assert sorted(g for gs in on_l4.values() for g in gs) == ["GPU-l4-0", "GPU-l4-1"]
    assert held(control) == {
        gpu: replica for replica, gpus in {**on_h100, **on_l4}.items() for gpu in gpus
    }
    for replica_id, gpus in on_h100.items():
        env = control.host.replicas[replica_id].env
        assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"] == ",".join(gpus)


async def test_two_gpus_per_replica_land_on_one_node_or_wait(make_control: MakeControl) -> None:
    control = make_control()
    declare(control)
    pair = add(control, H100, target=1, gpu_num=2)
    await control.until(lambda: len(control.ready(pair.service_id)) == 1, "ready")

    (gpus,) = gpus_of(control, pair).values()
    assert sorted(gpus) == ["GPU-h100-0", "GPU-h100-1"]


async def test_replicas_beyond_the_free_gpus_wait_and_are_placed_oldest_first(
    make_control: MakeControl,
) -> None:
    control = make_control()
    declare(control)
    first = add(control, H100, target=3)
    await control.until(lambda: len(control.ready(first.service_id)) == 2, "two ready")
    for _ in range(3):
        await control.step()

    status = control.status(first.service_id)
    assert status.status is EndpointStatus.INITIALIZING
    assert status.status_info is not None
    assert status.status_info.startswith("waiting for capacity: 2 of 3 replicas placed")
    older = add(control, H100, target=1)
    younger = add(control, H100, target=1)
    await control.step()

    save(control, first, target_instance_number=1)  # frees one GPU
    await control.until(lambda: len(control.ready(older.service_id)) == 1, "older placed")
    for _ in range(3):
        await control.step()

    assert control.ready(younger.service_id) == []
    (waiting,) = control.replicas(younger.service_id)
    assert waiting.state is ReplicaState.REQUESTED
    assert len(held(control)) == 2, "no GPU given twice"
    info = control.status(younger.service_id).status_info
    assert info is not None
    assert info.startswith("waiting for capacity: 0 of 1 replicas placed")


async def test_stopping_an_endpoint_frees_its_gpus_for_the_one_waiting(
    make_control: MakeControl,
) -> None:
    control = make_control()
    declare(control)
    first = add(control, H100, target=2)
    await control.until(lambda: len(control.ready(first.service_id)) == 2, "two ready")
    waiting = add(control, H100, target=1)
    await control.step()

    save(control, first, desired_state=DesiredState.STOPPED)
    await control.until(lambda: len(control.ready(waiting.service_id)) == 1, "placed")

    assert set(held(control).values()) == {control.ready(waiting.service_id)[0].replica_id}


async def test_a_crash_between_allocation_and_start_starts_the_replica_on_those_gpus(
    make_control: MakeControl,
) -> None:
    control = make_control()
    declare(control)
    endpoint = add(control, H100, target=1)
    # What a controller did before it was killed: the replica asked for and its GPUs
    # recorded, the runtime not yet told.
    with control.db.session() as session:
        ReplicaRepository(session).create("r-crashed", endpoint.service_id, 1, control.clock.now())
    allocated = gpus_for(control.db, endpoint, "r-crashed", control.clock.now())
    assert allocated == ("GPU-h100-0",)
    await control.restart()

    await control.until(lambda: len(control.ready(endpoint.service_id)) == 1, "ready")

    assert [s.gpus for s in control.runtime.starts] == [allocated]
    assert held(control) == {"GPU-h100-0": "r-crashed"}


async def test_a_crash_between_stop_and_release_frees_the_gpus_on_restart(
    make_control: MakeControl,
) -> None:
    control = make_control()
    declare(control)
    first = add(control, H100, target=2)
    await control.until(lambda: len(control.ready(first.service_id)) == 2, "two ready")
    stale = dict(held(control))
    save(control, first, desired_state=DesiredState.STOPPED)
    await control.until(lambda: not control.replicas(first.service_id), "stopped")
    # A store written by a moorage that recorded the stop but died before its GPUs
    # were freed: the rows are back, held by replicas that are finished.
    with control.db.session() as session:
        for gpu, replica_id in stale.items():
            session.add(
                GpuAllocationRow(
                    gpu_uuid=gpu,
                    replica_id=replica_id,
                    endpoint_id=first.service_id,
                    flavor_id=H100.flavor_id,
                    node="local",
                    allocated_at=T0,
                )
            )
    waiting = add(control, H100, target=2)
    await control.restart()

    await control.until(lambda: len(control.ready(waiting.service_id)) == 2, "placed")

    assert set(held(control).values()) == {r.replica_id for r in control.ready(waiting.service_id)}


def request(flavor: Flavor, *, target: int, gpu_num: int) -> CreateEndpointRequest:
    return CreateEndpointRequest.model_validate(
        {
            "name": f"gpu-{time.monotonic_ns()}",
            "resource_metadata": {
                "flavor_id": flavor.flavor_id,
                "scale_type": "manual",
                "target_instance_number": target,
            },
            "deploy_metadata": {
                "image_url": "local",
                "command": "serve",
                "port": 8000,
                "gpu_num": gpu_num,
            },
        }
    )


async def test_the_api_refuses_what_the_gpus_never_hold_and_counts_free_gpus(
    make_control: MakeControl,
) -> None:
    control = make_control()
    declare(control)
    service = EndpointService(control.db, control.clock, StatusPolicy(), max_instances=100)
    flavors = FlavorService(control.db, control.clock)
    with control.db.session() as session:
        user = AccountRepository(session).user_by_id(control.user_id)
    assert user is not None

    with pytest.raises(InvalidField) as too_many:
        service.create(user, request(H100, target=3, gpu_num=1))
    assert too_many.value.field == "resource_metadata.target_instance_number"
    assert "has 2 GPUs" in str(too_many.value)
    assert "3 would need 3" in str(too_many.value)
    with pytest.raises(InvalidField) as spread:
        service.create(user, request(L4, target=1, gpu_num=2))
    assert spread.value.field == "deploy_metadata.gpu_num"
    with pytest.raises(InvalidField) as none:
        service.create(user, request(L4, target=1, gpu_num=0))
    assert none.value.field == "deploy_metadata.gpu_num"

    available = {f.stored.flavor.display_name: f.available_num for f in flavors.list()}
    assert available == {"NVIDIA_H100_80GB_HBM3": 2, "NVIDIA_L4": 2}
    created = service.create(user, request(H100, target=2, gpu_num=1))
    service.create(user, request(H100, target=1, gpu_num=1))  # accepted: it waits
    available = {f.stored.flavor.display_name: f.available_num for f in flavors.list()}
    assert available["NVIDIA_H100_80GB_HBM3"] == 0
    await control.until(
        lambda: len(control.ready(created.endpoint.service_id)) == 2, "the first placed"
    )
    assert {f.stored.flavor.display_name: f.available_num for f in flavors.list()} == {
        "NVIDIA_H100_80GB_HBM3": 0,
        "NVIDIA_L4": 2,
    }


async def test_the_process_runtime_shows_a_replica_its_gpus(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path / "replicas", stop_grace_s=2.0)
    launch = Launch(
        "r-gpu",
        "ep-gpu",
        1,
        DeploySpec(
            image_url="local",
            command='echo "sees=$CUDA_VISIBLE_DEVICES/$NVIDIA_VISIBLE_DEVICES"; sleep 30',
            port=8000,
            gpu_num=1,
            env={"CUDA_VISIBLE_DEVICES": "GPU-not-mine"},
        ),
        sandboxed=False,
        gpus=("GPU-l4-1",),
    )
    try:
        await runtime.start(launch)
        deadline = time.monotonic() + 10
        output = b""
        while b"sees=" not in output:
            assert time.monotonic() < deadline, f"never printed: {output!r}"
            await asyncio.sleep(0.1)
            output = b"".join([c async for c in runtime.logs("r-gpu", tail=None, follow=False)])
        assert b"sees=GPU-l4-1/GPU-l4-1" in output
    finally:
        await runtime.stop("r-gpu")
        await runtime.close()


async def test_a_rollout_with_no_spare_gpu_replaces_replicas_one_at_a_time(
    make_control: MakeControl,
) -> None:
    control = make_control()
    declare(control)
    endpoint = add(control, H100, target=2)
    await control.until(lambda: len(control.ready(endpoint.service_id)) == 2, "two ready")

    updated = control.change_command(endpoint, "serve the new model")
    await control.until(
        lambda: (
            len(control.ready(endpoint.service_id, updated.revision)) == 2
            and len(control.replicas(endpoint.service_id)) == 2
        ),
        "the new revision on both GPUs",
    )

    assert len(held(control)) == 2
    # Some replica served throughout: once a table routed one, every later table did.
    first = next(i for i, t in enumerate(control.tables) if t.routed)
    assert all(t.routed for t in control.tables[first:])


async def test_a_replica_that_fails_to_start_gives_its_gpus_back_and_queues_behind(
    make_control: MakeControl,
) -> None:
    """A replica the runtime refuses at every start (a missing image) holds no GPU once
    its failure is recorded, and from then on queues behind replicas asked for before
    it failed: it never keeps a healthy endpoint's replica off the GPUs."""

    def script(launch: Launch) -> Behavior:
        if launch.deploy.command == "no such image":
            attempts.append(launch.gpus)
            return Behavior(error=StartError("deploy_metadata.image_url: no such image"))
        return Behavior()

    attempts: list[tuple[str, ...]] = []
    control = make_control(script)
    declare(control)
    broken = save(
        control,
        add(control, H100, target=1, gpu_num=2),
        deploy=DeploySpec(image_url="local", command="no such image", port=8000, gpu_num=2),
    )
    await control.step()
    assert attempts == [("GPU-h100-0", "GPU-h100-1")]
    (failed,) = control.replicas(broken.service_id)
    assert failed.state is ReplicaState.FAILED
    assert held(control) == {}, "a replica that failed to start holds no GPU"

    healthy = add(control, H100, target=1, gpu_num=1)
    await control.until(lambda: len(control.ready(healthy.service_id)) == 1, "healthy placed")
    for _ in range(5):
        await control.step(5)

    (ready,) = control.ready(healthy.service_id)
    assert set(held(control).values()) == {ready.replica_id}
    (still,) = control.replicas(broken.service_id)
    assert still.state is ReplicaState.FAILED
    assert len(attempts) >= 2, "the failing replica is still retried"
