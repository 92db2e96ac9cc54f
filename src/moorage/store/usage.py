"""Reading usage: the records checkpoints stored, plus, when asked, the seconds billed
since the last checkpoint, worked out from the events as a checkpoint would.

The pending part is what makes usage read to the second: checkpoints run every
``MOORAGE_METERING_INTERVAL_S`` (60 s), but a user asking for today's cost, a budget
checked before a start, or ``/metrics`` wants it up to now. The pending records are
computed, never written: only a checkpoint writes, so reading cannot double a second.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from moorage.models.billing import Usage
from moorage.models.metering import UsageRecord, billable_intervals, checkpoint
from moorage.store.metering import replica_events
from moorage.store.rates import stored_rate
from moorage.store.tables import ReplicaRateRow, UsageRecordRow

__all__ = ["Usage", "UsageRepository", "stored_usage", "usage_up_to"]

log = logging.getLogger(__name__)

Row = TypeVar("Row", ReplicaRateRow, UsageRecordRow)


def _filtered(
    query: Select[tuple[Row]],
    table: type[Row],
    user_id: str | None,
    endpoint_ids: Collection[str] | None,
) -> Select[tuple[Row]]:
    if user_id is not None:
        query = query.where(table.user_id == user_id)
    if endpoint_ids is not None:
        query = query.where(table.endpoint_id.in_(list(endpoint_ids)))
    return query


def stored_usage(
    session: Session,
    *,
    user_id: str | None = None,
    endpoint_ids: Collection[str] | None = None,
    since: datetime | None = None,
) -> Usage:
    """The records checkpoints stored (those ending after ``since``, when given)."""
    query = _filtered(
        select(UsageRecordRow).order_by(UsageRecordRow.record_id),
        UsageRecordRow,
        user_id,
        endpoint_ids,
    )
    if since is not None:
        query = query.where(UsageRecordRow.period_end > since)
    records = [
        UsageRecord(r.replica_id, r.period_start, r.period_end) for r in session.scalars(query)
    ]
    ids = {r.replica_id for r in records}
    rates = {
        row.replica_id: stored_rate(row)
        for row in session.scalars(select(ReplicaRateRow).where(ReplicaRateRow.replica_id.in_(ids)))
    }
    return Usage(records, rates)


def usage_up_to(
    session: Session,
    now: datetime,
    *,
    user_id: str | None = None,
    endpoint_ids: Collection[str] | None = None,
    since: datetime | None = None,
) -> Usage:
    """Stored usage plus the seconds not closed yet, up to ``now``.

    Only unsettled replicas are read for the pending part (running ones, and stopped
    ones the next checkpoint has not closed), so this costs a query per call, not per
    replica ever run.
    """
    usage = stored_usage(session, user_id=user_id, endpoint_ids=endpoint_ids, since=since)
    open_rows = session.scalars(
        _filtered(
            select(ReplicaRateRow).where(ReplicaRateRow.settled.is_(False)),
            ReplicaRateRow,
            user_id,
            endpoint_ids,
        )
    ).all()
    if not open_rows:
        return usage
    events = replica_events(session, [row.replica_id for row in open_rows])
    for row in open_rows:
        try:
            intervals = billable_intervals(events[row.replica_id])
        except ValueError:  # the checkpoint logs it; reading leaves it out
            continue
        pending = checkpoint(row.replica_id, intervals, row.billed_until, now).records
        if pending:
            usage.records.extend(pending)
            usage.rates[row.replica_id] = stored_rate(row)
        if intervals and intervals[-1].end is None:
            usage.billing_now[row.replica_id] = stored_rate(row)
    return usage


class UsageRepository:
    """Usage for the services: :func:`stored_usage` and :func:`usage_up_to` on a session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def stored(
        self,
        *,
        user_id: str | None = None,
        endpoint_ids: Collection[str] | None = None,
        since: datetime | None = None,
    ) -> Usage:
        return stored_usage(self.session, user_id=user_id, endpoint_ids=endpoint_ids, since=since)

    def up_to(
        self,
        now: datetime,
        *,
        user_id: str | None = None,
        endpoint_ids: Collection[str] | None = None,
        since: datetime | None = None,
    ) -> Usage:
        return usage_up_to(
            self.session, now, user_id=user_id, endpoint_ids=endpoint_ids, since=since
        )
