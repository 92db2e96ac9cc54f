"""Which replica holds which GPU, and what each GPU flavor has left.

The one place GPUs are counted: the controller places waiting replicas from
``free`` and ``waiting``, and the API answers ``available_num`` and refuses
impossible asks from ``usage``, all over the same rows. A GPU's UUID is the
table's key, so no GPU is ever held by two replicas, whatever runs at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from moorage.models.flavors import Flavor
from moorage.models.gpus import Gpu
from moorage.models.placement import Placement
from moorage.models.replicas import FailureReason, ReplicaEventKind
from moorage.models.states import DesiredState
from moorage.store.tables import (
    EndpointRevisionRow,
    EndpointRow,
    GpuAllocationRow,
    ReplicaEventRow,
    ReplicaRow,
)


@dataclass(frozen=True)
class WaitingReplica:
    """A live replica of a running endpoint that has no GPUs yet, oldest first."""

    replica_id: str
    endpoint_id: str
    gpu_num: int


@dataclass(frozen=True)
class GpuUsage:
    """A GPU flavor's GPUs: all of them, those held by replicas, and those that
    replicas already waiting will take as they free (asked for, not yet placed)."""

    total: int
    held: int
    queued: int

    @property
    def available(self) -> int:
        """GPUs a new replica could still have: ``available_num`` of a GPU flavor."""
        return max(0, self.total - self.held - self.queued)


def gpu_num_of(deploy: Mapping[str, Any] | None) -> int:
    """An endpoint's ``gpu_num`` as its stored deploy document holds it."""
    return int((deploy or {}).get("gpu_num", 0) or 0)


class GpuAllocationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def of_replica(self, replica_id: str) -> tuple[str, ...]:
        """The UUIDs of the GPUs a replica holds, by node and index."""
        rows = self.session.execute(
            select(GpuAllocationRow.gpu_uuid).where(GpuAllocationRow.replica_id == replica_id)
        )
        return tuple(sorted(uuid for (uuid,) in rows))

    def free(self, flavor: Flavor) -> dict[str, list[Gpu]]:
        """A flavor's GPUs no replica holds, by node."""
        held = set(self.session.scalars(select(GpuAllocationRow.gpu_uuid)))
        free: dict[str, list[Gpu]] = {}
        for gpu in flavor.gpus:
            if gpu.uuid not in held:
                free.setdefault(gpu.node, []).append(gpu)
        return free

    def waiting(self, flavor_id: str) -> list[WaitingReplica]:
        """Replicas of the flavor's running endpoints still waiting for GPUs, oldest
        first: by when each replica was asked for, or last failed to start if it did
        (it gave its GPUs back then, and queues again behind every replica asked for
        before that), then by its endpoint's age."""
        allocated = select(GpuAllocationRow.replica_id)
        # Per waiting replica, by its events' index: waiting replicas are few.
        failed_at = (
            select(func.max(ReplicaEventRow.at))
            .where(
                ReplicaEventRow.replica_id == ReplicaRow.replica_id,
                ReplicaEventRow.kind == ReplicaEventKind.FAILED.value,
                ReplicaEventRow.reason == FailureReason.START_ERROR.value,
            )
            .correlate(ReplicaRow)
            .scalar_subquery()
        )
        queued_at = func.coalesce(failed_at, ReplicaRow.created_at)
        rows = self.session.execute(
            select(ReplicaRow.replica_id, ReplicaRow.endpoint_id, EndpointRevisionRow.deploy)
            .join(
                EndpointRevisionRow,
                (EndpointRevisionRow.endpoint_id == ReplicaRow.endpoint_id)
                & (EndpointRevisionRow.revision == ReplicaRow.revision),
            )
            .join(EndpointRow, EndpointRow.service_id == ReplicaRow.endpoint_id)
            .where(
                ReplicaRow.finished.is_(False),
                ReplicaRow.replica_id.not_in(allocated),
                EndpointRevisionRow.flavor_id == flavor_id,
                EndpointRow.deleted_at.is_(None),
                EndpointRow.desired_state == DesiredState.RUNNING.value,
            )
            # Replicas asked for in one pass share a time: the older endpoint's first.
            .order_by(queued_at, EndpointRow.created_at, ReplicaRow.replica_id)
        )
        return [
            WaitingReplica(replica_id, endpoint_id, gpu_num_of(deploy))
            for replica_id, endpoint_id, deploy in rows
            if gpu_num_of(deploy) > 0
        ]

    def allocate(
        self, replica_id: str, endpoint_id: str, flavor_id: str, placement: Placement, now: datetime
    ) -> None:
        for gpu in placement.gpus:
            self.session.add(
                GpuAllocationRow(
                    gpu_uuid=gpu.uuid,
                    replica_id=replica_id,
                    endpoint_id=endpoint_id,
                    flavor_id=flavor_id,
                    node=placement.node,
                    allocated_at=now,
                )
            )
        self.session.flush()

    def placed_replicas(self, endpoint_id: str) -> int:
        """How many of the endpoint's replicas hold GPUs."""
        query = select(func.count(func.distinct(GpuAllocationRow.replica_id))).where(
            GpuAllocationRow.endpoint_id == endpoint_id
        )
        return int(self.session.scalar(query) or 0)

    def usage(self, flavor: Flavor, *, except_endpoint: str | None = None) -> GpuUsage:
        """The flavor's GPUs, held and queued; ``except_endpoint``'s own are left
        out (an update is checked against what the others hold)."""
        held_query = select(GpuAllocationRow.endpoint_id, GpuAllocationRow.replica_id).where(
            GpuAllocationRow.flavor_id == flavor.flavor_id
        )
        held = 0
        replicas_by_endpoint: dict[str, set[str]] = {}
        for endpoint_id, replica_id in self.session.execute(held_query):
            if endpoint_id == except_endpoint:
                continue
            held += 1
            replicas_by_endpoint.setdefault(endpoint_id, set()).add(replica_id)
        running = self.session.execute(
            select(
                EndpointRow.service_id, EndpointRow.target_instance_number, EndpointRow.deploy
            ).where(
                EndpointRow.flavor_id == flavor.flavor_id,
                EndpointRow.deleted_at.is_(None),
                EndpointRow.desired_state == DesiredState.RUNNING.value,
            )
        )
        queued = 0
        for service_id, target, deploy in running:
            if service_id == except_endpoint:
                continue
            placed = len(replicas_by_endpoint.get(service_id, ()))
            queued += max(0, target - placed) * gpu_num_of(deploy)
        return GpuUsage(len(flavor.gpus), held, queued)

    def free_counts(self, flavors: Sequence[Flavor]) -> dict[str, int]:
        """How many GPUs of each GPU flavor no replica holds, by flavor id."""
        held = set(self.session.scalars(select(GpuAllocationRow.gpu_uuid)))
        return {
            f.flavor_id: sum(1 for g in f.gpus if g.uuid not in held) for f in flavors if f.gpus
        }

    def release_finished(self) -> int:
        """Frees the GPUs of replicas recorded stopped (or gone): a restart's sweep,
        after a crash at any moment. Answers how many GPUs it freed."""
        live = select(ReplicaRow.replica_id).where(ReplicaRow.finished.is_(False))
        result = self.session.execute(
            delete(GpuAllocationRow).where(GpuAllocationRow.replica_id.not_in(live))
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def all(self) -> Sequence[tuple[str, str]]:
        """Every (GPU UUID, replica id) held."""
        rows = self.session.execute(
            select(GpuAllocationRow.gpu_uuid, GpuAllocationRow.replica_id).order_by(
                GpuAllocationRow.gpu_uuid
            )
        )
        return [(uuid, replica_id) for uuid, replica_id in rows]
