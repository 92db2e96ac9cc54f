"""Spending limits: the admin sets them, a user reads theirs, and the endpoint service
refuses what would spend past one.

A check reads the spend to the second (``usage_up_to``: stored records plus the
seconds since the last checkpoint), so raising a limit lets a refused request
through at once. Stopping what runs past a limit is the controller's
(``controller/budgets.py``); both read the same statuses from ``BudgetRepository``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy.orm import Session

from moorage.clock import Clock
from moorage.errors import NotFound, PaymentRequired
from moorage.models.billing import COST_QUANTUM
from moorage.models.budgets import Budget, BudgetPeriod, BudgetState, BudgetStatus
from moorage.store.accounts import AccountRepository
from moorage.store.budgets import BudgetRepository
from moorage.store.db import Database

__all__ = [
    "DEFAULT_WARNING_SHARE",
    "BudgetService",
    "budget_statuses_for",
    "check_budget",
]

# The warning when the admin names none: 80% of the limit.
DEFAULT_WARNING_SHARE = Decimal("0.8")


def budget_statuses_for(session: Session, user_id: str, now: datetime) -> tuple[BudgetStatus, ...]:
    """The user's budgets against their spend up to ``now``, worst first; () without
    budgets. For anything that shows a user where they stand (``billing_metadata``)."""
    return BudgetRepository(session).statuses(user_id, now)


def check_budget(session: Session, user_id: str, currency: str, now: datetime) -> None:
    """Refuses (402 ``budget_exceeded``) a write that would run an endpoint billed in
    ``currency`` while its owner's limit there is reached. Runs in the caller's
    transaction, before it writes, so a refusal changes nothing."""
    for status in budget_statuses_for(session, user_id, now):
        if status.budget.currency == currency and status.state is BudgetState.EXCEEDED:
            raise PaymentRequired(
                f"{status.message} (PUT /v1/users/{user_id}/budgets/{currency}); until "
                f"then your endpoints billed in {currency} cannot be created, started or "
                "scaled up"
            )


def default_warning(limit: Decimal) -> Decimal:
    return (limit * DEFAULT_WARNING_SHARE).quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


class BudgetService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def statuses(self, user_id: str) -> tuple[BudgetStatus, ...]:
        """The user's budgets with their spend and state, worst first (404 for no user)."""
        with self.db.session() as session:
            _require_user(session, user_id)
            return budget_statuses_for(session, user_id, self.clock.now())

    def put(
        self,
        user_id: str,
        currency: str,
        limit: Decimal,
        warning: Decimal | None,
        period: BudgetPeriod,
    ) -> BudgetStatus:
        """Sets the user's limit in ``currency`` (the warning defaults to 80% of it).
        Endpoints a reached limit stopped stay stopped until their user starts them."""
        budget = Budget(
            currency, limit, default_warning(limit) if warning is None else warning, period
        )
        now = self.clock.now()
        with self.db.checked_session() as session:
            _require_user(session, user_id)
            # Writes of one user's budgets take turns (as the enforcer's stops do), so
            # concurrent PUTs replace one another instead of inserting twice.
            AccountRepository(session).lock_user(user_id)
            budgets = BudgetRepository(session)
            budgets.put(user_id, budget, now)
            return next(s for s in budgets.statuses(user_id, now) if s.budget.currency == currency)

    def delete(self, user_id: str, currency: str) -> None:
        with self.db.checked_session() as session:
            _require_user(session, user_id)
            AccountRepository(session).lock_user(user_id)
            if not BudgetRepository(session).delete(user_id, currency):
                raise NotFound(
                    f"user {user_id!r} has no budget in {currency!r}; "
                    f"GET /v1/users/{user_id}/budgets lists theirs"
                )


def _require_user(session: Session, user_id: str) -> None:
    if AccountRepository(session).user_by_id(user_id) is None:
        raise NotFound(f"no user {user_id!r}; GET /v1/users lists them")
