"""An endpoint's history: its own changes and its replicas' events, newest first."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, insert, literal, select, union_all
from sqlalchemy.orm import Session

from moorage.models.events import EndpointChange, RecordedEvent
from moorage.models.states import EndpointEventKind
from moorage.store.replicas import replica_event
from moorage.store.tables import EndpointEventRow, ReplicaEventRow, ReplicaRow

# Which table a row of the merged history comes from. On the same instant a replica's
# event is listed before (newer than) the endpoint change that caused it.
_REPLICA, _ENDPOINT = 0, 1


class EventRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, change: EndpointChange) -> None:
        """Adds the change in the caller's transaction, so it is kept exactly when the
        change itself is."""
        self.session.add(
            EndpointEventRow(
                endpoint_id=change.endpoint_id,
                kind=change.kind.value,
                at=change.at,
                revision=change.revision,
                message=change.message,
            )
        )

    def record_once(self, change: EndpointChange) -> bool:
        """Adds the change unless one of its kind is already recorded for the same
        endpoint and revision (a rollout finishes once), in one statement: what decides
        is the store, not a controller's memory, which a restart loses. Answers whether
        it was added."""
        columns = EndpointEventRow.__table__.c
        already = (
            select(EndpointEventRow.event_id)
            .where(
                EndpointEventRow.endpoint_id == change.endpoint_id,
                EndpointEventRow.kind == change.kind.value,
                EndpointEventRow.revision == change.revision,
            )
            .exists()
        )
        values = select(
            literal(change.endpoint_id, columns.endpoint_id.type),
            literal(change.kind.value, columns.kind.type),
            literal(change.at, columns.at.type),
            literal(change.revision, columns.revision.type),
            literal(change.message, columns.message.type),
        ).where(~already)
        added = self.session.execute(
            insert(EndpointEventRow)
            .from_select(["endpoint_id", "kind", "at", "revision", "message"], values)
            .returning(EndpointEventRow.event_id)
        )
        return added.first() is not None

    def page(
        self, endpoint_id: str, *, offset: int, limit: int
    ) -> tuple[Sequence[RecordedEvent | EndpointChange], int]:
        """One page of the endpoint's history, newest first, and how long it is."""
        merged = union_all(
            select(
                literal(_REPLICA).label("source"),
                ReplicaEventRow.event_id.label("event_id"),
                ReplicaEventRow.at.label("at"),
            ).where(ReplicaEventRow.endpoint_id == endpoint_id),
            select(
                literal(_ENDPOINT).label("source"),
                EndpointEventRow.event_id.label("event_id"),
                EndpointEventRow.at.label("at"),
            ).where(EndpointEventRow.endpoint_id == endpoint_id),
        ).subquery()
        keys = self.session.execute(
            select(merged.c.source, merged.c.event_id)
            .order_by(merged.c.at.desc(), merged.c.source, merged.c.event_id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        total = self.session.scalar(select(func.count()).select_from(merged)) or 0
        replica_ids = [event_id for source, event_id in keys if source == _REPLICA]
        endpoint_ids = [event_id for source, event_id in keys if source == _ENDPOINT]
        replica_events = {
            row.event_id: RecordedEvent(replica_event(row), revision)
            for row, revision in self.session.execute(
                select(ReplicaEventRow, ReplicaRow.revision)
                .join(ReplicaRow, ReplicaRow.replica_id == ReplicaEventRow.replica_id)
                .where(ReplicaEventRow.event_id.in_(replica_ids))
            ).tuples()
        }
        changes = {
            row.event_id: EndpointChange(
                row.endpoint_id, EndpointEventKind(row.kind), row.at, row.revision, row.message
            )
            for row in self.session.scalars(
                select(EndpointEventRow).where(EndpointEventRow.event_id.in_(endpoint_ids))
            )
        }
        items: list[RecordedEvent | EndpointChange] = [
            replica_events[event_id] if source == _REPLICA else changes[event_id]
            for source, event_id in keys
        ]
        return items, total
