"""The GPU allocation table on both stores: a GPU is never held by two replicas,
waiting replicas come oldest first, and a replica's GPUs go with its stop or with its
failure to start."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from moorage.models.endpoints import DeploySpec, Endpoint
from moorage.models.flavors import Flavor
from moorage.models.gpus import Gpu
from moorage.models.placement import Placement
from moorage.models.replicas import FailureReason, ReplicaEvent, ReplicaEventKind
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.flavors import FlavorRepository
from moorage.store.gpus import GpuAllocationRepository
from moorage.store.replicas import ReplicaRepository
from tests.unit.builders import T0, make_endpoint

FLAVOR = Flavor(
    flavor_id="a" * 32,
    display_name="NVIDIA_H100_80GB_HBM3",
    cluster_id="1",
    cluster_flavor_id="h100",
    capacity=2,
    node_max_gpu=2,
    gpus=(Gpu("local", 0, "GPU-0"), Gpu("local", 1, "GPU-1")),
)


def endpoint(db: Database, service_id: str, *, target: int) -> Endpoint:
    with db.session() as session:
        user = AccountRepository(session).create_user(service_id, is_admin=False, now=T0)
        made = dataclasses.replace(
            make_endpoint(service_id, user_id=user.user_id, target=target),
            flavor_id=FLAVOR.flavor_id,
            deploy=DeploySpec(image_url="local", command="serve", port=8000, gpu_num=1),
        )
        EndpointRepository(session).add(made)
        EndpointRepository(session).add_revision(made)
    return made


def replica(db: Database, replica_id: str, endpoint_id: str, seconds: int) -> None:
    with db.session() as session:
        ReplicaRepository(session).create(
            replica_id, endpoint_id, 1, T0 + timedelta(seconds=seconds)
        )


def allocate(db: Database, replica_id: str, endpoint_id: str, gpu: Gpu) -> None:
    with db.session() as session:
        GpuAllocationRepository(session).allocate(
            replica_id, endpoint_id, FLAVOR.flavor_id, Placement("local", (gpu,)), T0
        )


def test_gpus_are_held_once_queued_oldest_first_and_freed_with_the_stop(db: Database) -> None:
    with db.session() as session:
        FlavorRepository(session).sync([FLAVOR], T0)
    ep = endpoint(db, "ep-1", target=3)
    replica(db, "r-young", ep.service_id, 30)
    replica(db, "r-old", ep.service_id, 10)
    replica(db, "r-held", ep.service_id, 0)
    allocate(db, "r-held", ep.service_id, FLAVOR.gpus[0])

    with pytest.raises(IntegrityError):
        allocate(db, "r-old", ep.service_id, FLAVOR.gpus[0])  # held already
    with db.session() as session:
        gpus = GpuAllocationRepository(session)
        assert [w.replica_id for w in gpus.waiting(FLAVOR.flavor_id)] == ["r-old", "r-young"]
        assert gpus.free(FLAVOR) == {"local": [FLAVOR.gpus[1]]}
        usage = gpus.usage(FLAVOR)
        assert (usage.total, usage.held, usage.queued, usage.available) == (2, 1, 2, 0)

    with db.session() as session:
        ReplicaRepository(session).record(
            ReplicaEvent("r-held", ep.service_id, ReplicaEventKind.STOPPED, T0)
        )
    with db.session() as session:
        assert GpuAllocationRepository(session).all() == []


def test_a_restart_frees_gpus_of_replicas_that_finished(db: Database) -> None:
    with db.session() as session:
        FlavorRepository(session).sync([FLAVOR], T0)
    ep = endpoint(db, "ep-2", target=1)
    replica(db, "r-live", ep.service_id, 0)
    replica(db, "r-done", ep.service_id, 1)
    with db.session() as session:
        ReplicaRepository(session).record(
            ReplicaEvent("r-done", ep.service_id, ReplicaEventKind.STOPPED, T0)
        )
    allocate(db, "r-live", ep.service_id, FLAVOR.gpus[0])
    allocate(db, "r-done", ep.service_id, FLAVOR.gpus[1])  # left by a crash

    with db.session() as session:
        assert GpuAllocationRepository(session).release_finished() == 1
    with db.session() as session:
        assert GpuAllocationRepository(session).all() == [("GPU-0", "r-live")]
        (stored,) = FlavorRepository(session).list_live()
        assert stored.flavor.gpus == FLAVOR.gpus


def test_a_replica_that_failed_to_start_gives_its_gpus_back_and_queues_from_then(
    db: Database,
) -> None:
    with db.session() as session:
        FlavorRepository(session).sync([FLAVOR], T0)
    ep = endpoint(db, "ep-3", target=3)
    replica(db, "r-refused", ep.service_id, 0)
    replica(db, "r-crashed", ep.service_id, 10)
    replica(db, "r-waiting", ep.service_id, 20)
    allocate(db, "r-refused", ep.service_id, FLAVOR.gpus[0])
    allocate(db, "r-crashed", ep.service_id, FLAVOR.gpus[1])

    with db.session() as session:
        replicas = ReplicaRepository(session)
        # It ran, then exited: it keeps its GPU through its restart's backoff.
        replicas.record(
            ReplicaEvent(
                "r-crashed",
                ep.service_id,
                ReplicaEventKind.FAILED,
                T0 + timedelta(seconds=15),
                reason=FailureReason.EXITED,
            )
        )
        # The runtime refused to start it: its GPU is free in the same transaction.
        replicas.record(
            ReplicaEvent(
                "r-refused",
                ep.service_id,
                ReplicaEventKind.FAILED,
                T0 + timedelta(seconds=25),
                reason=FailureReason.START_ERROR,
                detail="deploy_metadata.image_url: no such image",
            )
        )
        assert GpuAllocationRepository(session).all() == [("GPU-1", "r-crashed")]

    with db.session() as session:
        gpus = GpuAllocationRepository(session)
        assert gpus.all() == [("GPU-1", "r-crashed")]
        # Asked for first, but it failed to start after r-waiting was asked for.
        assert [w.replica_id for w in gpus.waiting(FLAVOR.flavor_id)] == [
            "r-waiting",
            "r-refused",
        ]
