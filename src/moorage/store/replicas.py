"""Replicas and their event log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from moorage.models.replicas import (
    FailureReason,
    Replica,
    ReplicaEvent,
    ReplicaEventKind,
    StartupWatch,
    derive_replica,
)
from moorage.store.rates import fix_rate_once
from moorage.store.tables import GpuAllocationRow, ReplicaEventRow, ReplicaRow


def _gives_gpus_back(event: ReplicaEvent) -> bool:
    """Whether recording ``event`` frees the replica's GPUs: once it stopped, or failed
    to start (docs/gpus.md). A replica that ran and then failed keeps them through its
    restart's backoff, so it restarts on the GPUs it had."""
    return event.kind is ReplicaEventKind.STOPPED or (
        event.kind is ReplicaEventKind.FAILED and event.reason is FailureReason.START_ERROR
    )


def replica_event(row: ReplicaEventRow) -> ReplicaEvent:
    return ReplicaEvent(
        replica_id=row.replica_id,
        endpoint_id=row.endpoint_id,
        kind=ReplicaEventKind(row.kind),
        at=row.at,
        address=row.address,
        reason=FailureReason(row.reason) if row.reason else None,
        detail=row.detail,
    )


class ReplicaRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, replica_id: str, endpoint_id: str, revision: int, now: datetime) -> None:
        """Creates the replica with its ``requested`` event, in the caller's transaction."""
        self.session.add(
            ReplicaRow(
                replica_id=replica_id,
                endpoint_id=endpoint_id,
                revision=revision,
                created_at=now,
                finished=False,
            )
        )
        self.session.flush()
        self.record(ReplicaEvent(replica_id, endpoint_id, ReplicaEventKind.REQUESTED, now))

    def record(self, event: ReplicaEvent) -> int | None:
        """Appends the event; answers the replica's revision. None, with nothing
        recorded, for an unknown replica or one already stopped: a stop planned from a
        read made just before the first stop was recorded happened once, and is
        recorded (and logged) once."""
        row = self.session.get(ReplicaRow, event.replica_id)
        if row is not None and row.finished:
            return None
        self.session.add(
            ReplicaEventRow(
                replica_id=event.replica_id,
                endpoint_id=event.endpoint_id,
                kind=event.kind.value,
                at=event.at,
                address=event.address,
                reason=event.reason.value if event.reason else None,
                detail=event.detail,
            )
        )
        if row is not None and event.kind is ReplicaEventKind.STOPPED:
            row.finished = True
        if row is not None and _gives_gpus_back(event):
            # Its GPUs are free the moment it is recorded stopped, in this transaction:
            # no moment where the replica is gone and its GPUs still held, or the reverse.
            # Likewise once it failed to start: nothing of it runs on them, and a replica
            # that can never start must not keep them from others between its retries.
            self.session.execute(
                delete(GpuAllocationRow).where(GpuAllocationRow.replica_id == event.replica_id)
            )
        if row is not None and event.kind is ReplicaEventKind.STARTED:
            # Billing opens here: the rate is fixed at the first placement, at the
            # flavor's price now, in this transaction (docs/billing.md).
            fix_rate_once(self.session, row, event.at)
            row.progress = None
            _write_watch(row, StartupWatch())  # a new life: nothing seen of it yet
        self.session.flush()
        return row.revision if row is not None else None

    def set_progress(self, replica_id: str, progress: str | None) -> None:
        row = self.session.get(ReplicaRow, replica_id)
        if row is not None and row.progress != progress:
            row.progress = progress

    def set_startup(self, replica_id: str, watch: StartupWatch) -> None:
        """Records what was seen of a starting replica (the caller writes only a change)."""
        row = self.session.get(ReplicaRow, replica_id)
        if row is not None and not row.finished:
            _write_watch(row, watch)

    def live(self, endpoint_ids: Iterable[str] | None = None) -> Sequence[Replica]:
        """Replicas not yet stopped, derived from their events: two queries, however many
        replicas (the events are selected by a join, not by a list of ids, which SQLite
        caps at 32,766)."""
        live = [ReplicaRow.finished.is_(False)]
        if endpoint_ids is not None:
            live.append(ReplicaRow.endpoint_id.in_(list(endpoint_ids)))
        # Columns, not ORM objects: these reads serve every GET of an endpoint, and
        # SQLAlchemy's identity map and attribute machinery cost more than the query.
        rows = self.session.execute(
            select(
                ReplicaRow.replica_id,
                ReplicaRow.endpoint_id,
                ReplicaRow.revision,
                ReplicaRow.progress,
                ReplicaRow.probe_detail,
                ReplicaRow.probe_since,
                ReplicaRow.given_port,
                ReplicaRow.listening_ports,
            )
            .where(*live)
            .order_by(ReplicaRow.created_at, ReplicaRow.replica_id)
        ).all()
        if not rows:
            return []
        events: dict[str, list[ReplicaEvent]] = defaultdict(list)
        event_rows = self.session.execute(
            select(
                ReplicaEventRow.replica_id,
                ReplicaEventRow.endpoint_id,
                ReplicaEventRow.kind,
                ReplicaEventRow.at,
                ReplicaEventRow.address,
                ReplicaEventRow.reason,
                ReplicaEventRow.detail,
            )
            .join(ReplicaRow, ReplicaRow.replica_id == ReplicaEventRow.replica_id)
            .where(*live)
            .order_by(ReplicaEventRow.event_id)
        )
        for replica_id, endpoint_id, kind, at, address, reason, detail in event_rows:
            events[replica_id].append(
                ReplicaEvent(
                    replica_id=replica_id,
                    endpoint_id=endpoint_id,
                    kind=ReplicaEventKind(kind),
                    at=at,
                    address=address,
                    reason=FailureReason(reason) if reason else None,
                    detail=detail,
                )
            )
        # The two reads are two snapshots on SQLite (each SELECT stands alone): a
        # replica that finished in between has no events in the second; it is no
        # longer live, so it is left out.
        return [
            derive_replica(
                r.replica_id,
                r.endpoint_id,
                r.revision,
                events[r.replica_id],
                r.progress,
                StartupWatch(
                    r.probe_detail, r.probe_since, r.given_port, *_ports(r.listening_ports)
                ),
            )
            for r in rows
            if events[r.replica_id]
        ]


def _write_watch(row: ReplicaRow, watch: StartupWatch) -> None:
    row.probe_detail = watch.probe[:255] if watch.probe else None
    row.probe_since = watch.probe_since
    row.given_port = watch.given_port
    listening = watch.listening
    if listening is None:
        row.listening_ports = None
        return
    tokens = [*map(str, listening[:32]), *watch.inside_only[:8]]
    while len(",".join(tokens)) > _PORTS_CHARS:
        tokens.pop()
    row.listening_ports = ",".join(tokens)


_PORTS_CHARS = 255  # the column's size


def _ports(text: str | None) -> tuple[tuple[int, ...] | None, tuple[str, ...]]:
    """Listening ports as stored: None unknown, "" none, else "8080,9090", followed by
    the ports reached only from inside ("8080,127.0.0.1:8080"): one column, no
    migration, and a value written before those were kept reads as before."""
    if text is None:
        return None, ()
    tokens = text.split(",")
    ports = tuple(int(p) for p in tokens if p.isdigit())
    return ports, tuple(t for t in tokens if ":" in t)
