"""Gives a replica its GPUs before it starts, in one transaction, oldest first.

A replica of a GPU flavor starts only once its GPUs are recorded as its own
(``store/gpus.py``): the allocation commits before the runtime is asked, so a
crash after it leaves the replica ``requested`` with its GPUs, and the next
pass starts it on those same GPUs. Its GPUs are freed in the transaction that
records it stopped, and a restart's first pass frees those of any replica
recorded stopped meanwhile: no GPU is held twice or lost.

Each attempt places the flavor's whole queue of waiting replicas in request
order (``models/placement.py``) and takes only this replica's share, so the
order actions run in never lets a younger replica past an older one.
"""

from __future__ import annotations

from datetime import datetime

from moorage.models.endpoints import Endpoint
from moorage.models.placement import GpuRequest, place, waiting_for_capacity
from moorage.store.db import Database
from moorage.store.flavors import FlavorRepository
from moorage.store.gpus import GpuAllocationRepository
from moorage.store.replicas import ReplicaRepository

__all__ = ["free_gpus", "gpus_for", "release_finished"]


def gpus_for(
    db: Database, endpoint: Endpoint, replica_id: str, now: datetime
) -> tuple[str, ...] | None:
    """The UUIDs of the GPUs the replica runs on, allocating them now if it has none;
    ``()`` when it needs none; None while it waits for GPUs to free (its progress
    then says how many of the endpoint's replicas are placed)."""
    if endpoint.deploy.gpu_num <= 0:
        return ()
    with db.session() as session:
        # Locks the flavor's row (PostgreSQL): one placement per flavor at a time.
        flavor = FlavorRepository(session).get(endpoint.flavor_id, for_update=True)
        if flavor is None or not flavor.flavor.has_gpus:
            return ()  # a flavor of slots: the runtime is asked for any gpu_num GPUs
        gpus = GpuAllocationRepository(session)
        held = gpus.of_replica(replica_id)
        if held:
            return held
        queue = [GpuRequest(w.replica_id, w.gpu_num) for w in gpus.waiting(endpoint.flavor_id)]
        placement = place(gpus.free(flavor.flavor), queue).get(replica_id)
        replicas = ReplicaRepository(session)
        if placement is None:
            placed = gpus.placed_replicas(endpoint.service_id)
            replicas.set_progress(
                replica_id, waiting_for_capacity(placed, endpoint.target_instance_number)
            )
            return None
        gpus.allocate(replica_id, endpoint.service_id, endpoint.flavor_id, placement, now)
        replicas.set_progress(replica_id, None)
        return placement.uuids


def release_finished(db: Database) -> int:
    """Frees the GPUs of every replica recorded stopped: a restart's first pass."""
    with db.session() as session:
        return GpuAllocationRepository(session).release_finished()


def free_gpus(db: Database) -> dict[str, int]:
    """Each GPU flavor's GPUs no replica holds: what ``plan`` weighs before it stops
    an old replica to make room for a new revision's."""
    with db.session() as session:
        flavors = [s.flavor for s in FlavorRepository(session).list_live()]
        return GpuAllocationRepository(session).free_counts(flavors)
