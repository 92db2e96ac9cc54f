"""Closing replicas' usage into records: the store's side of a checkpoint.

Events are the source of usage, so a checkpoint can always be run again: for each
replica with a rate and usage not settled, it reads the replica's events, works out
what (billed_until, now] adds (``models/metering.py``), and writes the records with
the new ``billed_until`` in one transaction. ``billed_until`` is moved by an update
conditional on the value read: of two checkpoints racing on one replica (two moorage
processes on one PostgreSQL), the second finds it moved, updates nothing and writes
none of its records, so no second is billed twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from moorage.models.billing import ReplicaRate, cost
from moorage.models.metering import (
    Checkpoint,
    Interval,
    UsageRecord,
    billable_intervals,
    checkpoint,
    tick,
)
from moorage.models.replicas import ReplicaEvent
from moorage.store.db import Database
from moorage.store.rates import stored_rate
from moorage.store.replicas import replica_event
from moorage.store.tables import ReplicaEventRow, ReplicaRateRow, ReplicaRow, UsageRecordRow

log = logging.getLogger(__name__)

# Replicas closed per transaction: a batch's events are read in one query.
BATCH = 200


@dataclass(frozen=True)
class Closed:
    """What a checkpoint stored: replicas whose billed_until it moved, records, seconds."""

    replicas: int = 0
    records: int = 0
    seconds: int = 0

    def __add__(self, other: Closed) -> Closed:
        return Closed(
            self.replicas + other.replicas,
            self.records + other.records,
            self.seconds + other.seconds,
        )


def checkpoint_usage(db: Database, now: datetime, batch: int = BATCH) -> Closed:
    """Closes every unsettled replica's usage up to ``now``, one transaction a batch.

    Replicas settled (stopped and billed up to their stop) are not read at all.
    """
    closed = Closed()
    after = ""
    while True:
        with db.session() as session:
            rows = session.scalars(
                select(ReplicaRateRow)
                .where(ReplicaRateRow.settled.is_(False), ReplicaRateRow.replica_id > after)
                .order_by(ReplicaRateRow.replica_id)
                .limit(batch)
            ).all()
            if not rows:
                return closed
            ids = [r.replica_id for r in rows]
            finished = set(
                session.scalars(
                    select(ReplicaRow.replica_id).where(
                        ReplicaRow.replica_id.in_(ids), ReplicaRow.finished.is_(True)
                    )
                )
            )
            events = replica_events(session, ids)
            for row in rows:
                closed += _close(
                    session, row, row.replica_id in finished, events[row.replica_id], now
                )
            after = ids[-1]
        if len(rows) < batch:
            return closed


def replica_events(session: Session, ids: Sequence[str]) -> dict[str, list[ReplicaEvent]]:
    """The replicas' recorded events, each replica's oldest first."""
    found: dict[str, list[ReplicaEvent]] = defaultdict(list)
    for event_row in session.scalars(
        select(ReplicaEventRow)
        .where(ReplicaEventRow.replica_id.in_(ids))
        .order_by(ReplicaEventRow.event_id)
    ):
        found[event_row.replica_id].append(replica_event(event_row))
    return found


def _close(
    session: Session,
    row: ReplicaRateRow,
    finished: bool,
    events: Sequence[ReplicaEvent],
    now: datetime,
) -> Closed:
    """One replica's part of a checkpoint; nothing when another checkpoint got there first."""
    try:
        intervals = billable_intervals(events)
    except ValueError:  # a bill must not rest on a guess: said, and left for a person
        log.exception("replica %s: its usage cannot be billed from its events", row.replica_id)
        return Closed()
    read = row.billed_until
    closing = checkpoint(row.replica_id, intervals, read, now)
    settled = finished and _all_closed(intervals, closing)
    if closing.billed_until == read and not settled:
        return Closed()
    moved = session.execute(
        update(ReplicaRateRow)
        .where(
            ReplicaRateRow.replica_id == row.replica_id,
            ReplicaRateRow.billed_until.is_(None)
            if read is None
            else ReplicaRateRow.billed_until == read,
        )
        .values(billed_until=closing.billed_until, settled=settled)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return Closed()
    rate = stored_rate(row)
    pieces = list(closing.records)
    if pieces and read is not None and _extend(session, pieces[0], rate):
        pieces = pieces[1:]
    session.add_all(_record_row(record, rate) for record in pieces)
    return Closed(1, len(closing.records), sum(r.seconds for r in closing.records))


def _extend(session: Session, record: UsageRecord, rate: ReplicaRate) -> bool:
    """Adds ``record`` to the stored record it continues (same replica and UTC day,
    ending where it starts), so a replica billed without a break keeps one record a
    day, not one a checkpoint: reading a month's usage stays cheap. Runs under the
    conditional ``billed_until`` update, so no other checkpoint extends it at once."""
    stored = session.scalars(
        select(UsageRecordRow).where(
            UsageRecordRow.replica_id == record.replica_id,
            UsageRecordRow.period_end == record.start,
            UsageRecordRow.day == record.day,
        )
    ).first()
    if stored is None:
        return False
    seconds = stored.seconds + record.seconds
    stored.period_end = record.end
    stored.seconds = seconds
    stored.gpu_seconds = seconds * rate.gpu_num
    stored.cost = cost(rate, seconds)
    return True


def _all_closed(intervals: Sequence[Interval], closing: Checkpoint) -> bool:
    """Whether every billed second of a stopped replica is in records after this one."""
    if not intervals:
        return True
    last = intervals[-1].end
    return (
        last is not None
        and closing.billed_until is not None
        and tick(last) <= tick(closing.billed_until)
    )


def _record_row(record: UsageRecord, rate: ReplicaRate) -> UsageRecordRow:
    return UsageRecordRow(
        replica_id=record.replica_id,
        endpoint_id=rate.endpoint_id,
        user_id=rate.user_id,
        flavor_id=rate.flavor_id,
        day=record.day,
        period_start=record.start,
        period_end=record.end,
        seconds=record.seconds,
        gpu_seconds=record.seconds * rate.gpu_num,
        currency=rate.currency,
        cost=cost(rate, record.seconds),
    )
