"""Spending limits as the store keeps them (``budgets``), and the spend they count.

Amounts are stored exactly (``ExactDecimal``), never through a float, so a limit reads
back to the last of its six decimals and compares exactly with a spend.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from moorage.models.budgets import (
    Budget,
    BudgetPeriod,
    BudgetStatus,
    spend_by_currency,
    statuses_at,
    window_start,
)
from moorage.models.endpoints import DesiredState, Endpoint
from moorage.store.endpoints import EndpointRepository
from moorage.store.tables import BudgetRow, EndpointRow, ReplicaRateRow
from moorage.store.usage import usage_up_to

__all__ = ["BudgetRepository"]


def _budget(row: BudgetRow) -> Budget:
    return Budget(row.currency, row.limit_amount, row.warning_amount, BudgetPeriod(row.period))


class BudgetRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def for_user(self, user_id: str) -> list[Budget]:
        """The user's budgets, by currency."""
        rows = self.session.scalars(
            select(BudgetRow).where(BudgetRow.user_id == user_id).order_by(BudgetRow.currency)
        )
        return [_budget(row) for row in rows]

    def by_user(self) -> dict[str, list[Budget]]:
        """Every user with a budget, and their budgets: what the enforcer checks."""
        found: dict[str, list[Budget]] = {}
        rows = self.session.scalars(
            select(BudgetRow).order_by(BudgetRow.user_id, BudgetRow.currency)
        )
        for row in rows:
            found.setdefault(row.user_id, []).append(_budget(row))
        return found

    def put(self, user_id: str, budget: Budget, now: datetime) -> None:
        """Sets the user's budget in ``budget.currency``, replacing the one there."""
        row = self.session.get(BudgetRow, (user_id, budget.currency))
        if row is None:
            row = BudgetRow(user_id=user_id, currency=budget.currency)
            self.session.add(row)
        row.limit_amount = budget.limit
        row.warning_amount = budget.warning
        row.period = budget.period.value
        row.updated_at = now
        self.session.flush()

    def delete(self, user_id: str, currency: str) -> bool:
        """Removes the user's budget in ``currency``; False when there was none."""
        result = self.session.execute(
            delete(BudgetRow).where(BudgetRow.user_id == user_id, BudgetRow.currency == currency)
        )
        return bool(getattr(result, "rowcount", 0))

    def running_endpoints(self, user_id: str, currency: str) -> Sequence[Endpoint]:
        """The user's live endpoints that want to run and are billed in ``currency``:
        by their ``payment_type``, or by a replica still billing at a rate fixed in
        it (whatever the endpoint says now, its replicas' rates are what is billed)."""
        billing_in = select(ReplicaRateRow.endpoint_id).where(
            ReplicaRateRow.user_id == user_id,
            ReplicaRateRow.currency == currency,
            ReplicaRateRow.settled.is_(False),
        )
        ids = self.session.scalars(
            select(EndpointRow.service_id).where(
                EndpointRow.user_id == user_id,
                or_(EndpointRow.payment_type == currency, EndpointRow.service_id.in_(billing_in)),
                EndpointRow.deleted_at.is_(None),
                EndpointRow.desired_state == DesiredState.RUNNING.value,
            )
        ).all()
        endpoints = EndpointRepository(self.session)
        return [e for e in (endpoints.get_live(i) for i in ids) if e is not None]

    def spend_since(self, user_id: str, since: datetime, now: datetime) -> dict[str, Decimal]:
        """What the user's usage cost in [since, now), per currency, to the second
        (seconds not checkpointed yet included), deleted endpoints' too."""
        usage = usage_up_to(self.session, now, user_id=user_id, since=since)
        return spend_by_currency(usage, since, now)

    def statuses(self, user_id: str, now: datetime) -> tuple[BudgetStatus, ...]:
        """Each of the user's budgets against their spend in its period up to ``now``,
        worst first; () for a user without budgets (nothing is read then)."""
        budgets = self.for_user(user_id)
        if not budgets:
            return ()
        since = min(window_start(b.period, now) for b in budgets)
        return statuses_at(
            budgets, usage_up_to(self.session, now, user_id=user_id, since=since), now
        )
