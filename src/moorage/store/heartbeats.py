"""The last moment a part of moorage was seen working, one row per part.

The controller writes ``controller`` after its passes (at most once a second: one
small UPDATE, whatever the number of replicas), and a restarted controller reads the
previous run's before writing its own, to close replicas that died while moorage was
down at moorage's last sign of life (``models/downtime.py``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from moorage.store.tables import HeartbeatRow

CONTROLLER = "controller"


def last_heartbeat(session: Session, name: str) -> datetime | None:
    """When ``name`` last said it was alive; None if it never did."""
    row = session.get(HeartbeatRow, name)
    return row.at if row is not None else None


def beat(session: Session, name: str, at: datetime) -> None:
    """Records that ``name`` was alive at ``at``: an UPDATE of its row, inserted the
    first time."""
    result = session.execute(update(HeartbeatRow).where(HeartbeatRow.name == name).values(at=at))
    if not getattr(result, "rowcount", 0):
        session.add(HeartbeatRow(name=name, at=at))
