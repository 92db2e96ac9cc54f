"""Flavors as the store keeps them, synced from the operator's list at start."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from moorage.models.flavors import Flavor, StoredFlavor
from moorage.models.gpus import Gpu
from moorage.store.tables import FlavorRow


def _stored(row: FlavorRow) -> StoredFlavor:
    flavor = Flavor(
        flavor_id=row.flavor_id,
        display_name=row.display_name,
        cluster_id=row.cluster_id,
        cluster_flavor_id=row.cluster_flavor_id,
        capacity=row.capacity,
        node_max_gpu=row.node_max_gpu,
        meta_info=dict(row.meta_info),
        prices={str(k): float(v) for k, v in row.prices.items()},
        vram=row.vram,
        gpus=tuple(Gpu.from_json(g) for g in row.gpus or ()),
    )
    return StoredFlavor(flavor, row.created_at, row.updated_at, row.deleted_at)


def _fields(flavor: Flavor) -> dict[str, object]:
    return {
        "display_name": flavor.display_name,
        "cluster_id": flavor.cluster_id,
        "cluster_flavor_id": flavor.cluster_flavor_id,
        "meta_info": dict(flavor.meta_info),
        "prices": dict(flavor.prices),
        "capacity": flavor.capacity,
        "node_max_gpu": flavor.node_max_gpu,
        "vram": flavor.vram,
        "gpus": [g.to_json() for g in flavor.gpus],
    }


class FlavorRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def sync(self, flavors: Sequence[Flavor], now: datetime) -> None:
        """Makes the store match the operator's list; dropped flavors are soft-deleted
        so endpoints created on them still show what they ran on."""
        wanted = {f.flavor_id: f for f in flavors}
        for row in self.session.scalars(select(FlavorRow)):
            flavor = wanted.pop(row.flavor_id, None)
            if flavor is None:
                if row.deleted_at is None:
                    row.deleted_at = now
                    row.updated_at = now
                continue
            fields = _fields(flavor)
            changed = any(getattr(row, k) != v for k, v in fields.items())
            if changed or row.deleted_at is not None:
                for key, value in fields.items():
                    setattr(row, key, value)
                row.deleted_at = None
                row.updated_at = now
        for flavor in wanted.values():
            self.session.add(
                FlavorRow(
                    flavor_id=flavor.flavor_id,
                    created_at=now,
                    updated_at=now,
                    deleted_at=None,
                    **_fields(flavor),
                )
            )

    def set_capacities(self, capacity: Mapping[str, int], now: datetime) -> list[Flavor]:
        """Sets the capacity of every live flavor of replica slots whose key
        (``cluster_flavor_id``) is in ``capacity``; answers the flavors it changed. GPU
        flavors count their own GPUs and are left as they are."""
        changed: list[Flavor] = []
        rows = self.session.scalars(
            select(FlavorRow).where(
                FlavorRow.deleted_at.is_(None), FlavorRow.cluster_flavor_id.in_(list(capacity))
            )
        )
        for row in rows:
            wanted = capacity[row.cluster_flavor_id]
            if row.gpus or row.capacity == wanted:
                continue
            row.capacity = wanted
            row.updated_at = now
            changed.append(_stored(row).flavor)
        return changed

    def get(self, flavor_id: str, *, for_update: bool = False) -> StoredFlavor | None:
        query = select(FlavorRow).where(FlavorRow.flavor_id == flavor_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.scalars(query).first()
        return _stored(row) if row else None

    def list_live(self) -> Sequence[StoredFlavor]:
        rows = self.session.scalars(
            select(FlavorRow)
            .where(FlavorRow.deleted_at.is_(None))
            .order_by(FlavorRow.created_at, FlavorRow.flavor_id)
        )
        return [_stored(r) for r in rows]
