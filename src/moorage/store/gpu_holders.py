"""Who holds each GPU, for ``/metrics``: one small read of ``gpu_allocations``."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from moorage.store.tables import GpuAllocationRow

__all__ = ["GpuHolderRepository"]


class GpuHolderRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def holders(self) -> dict[str, tuple[str, str]]:
        """By GPU UUID, the ``(endpoint id, replica id)`` holding each held GPU."""
        rows = self.session.execute(
            select(
                GpuAllocationRow.gpu_uuid, GpuAllocationRow.endpoint_id, GpuAllocationRow.replica_id
            )
        )
        return {uuid: (endpoint_id, replica_id) for uuid, endpoint_id, replica_id in rows}
