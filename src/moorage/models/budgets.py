"""Spending limits: whether a user's spend in a currency is ok, near its limit, or over it.

The admin sets a limit per user and currency and a warning amount at or below it. A
spend at the warning or above is ``warning``; at the limit or above is ``exceeded``
(the limit is what may be spent, so reaching it is enough). Each message names the
limit and the spend, so whoever shows it (``status_info``, a refusal) need not
rebuild it. Which endpoints stop and which requests are refused is the caller's.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from moorage.errors import InvalidField
from moorage.models.billing import COST_QUANTUM
from moorage.models.flavors import CURRENCIES

__all__ = ["Budget", "BudgetState", "BudgetStatus", "budget_status", "budget_statuses"]


class BudgetState(enum.StrEnum):
    """Worst last: comparing by position in the enum tells which status matters most."""

    OK = "ok"
    WARNING = "warning"
    EXCEEDED = "exceeded"

    @property
    def rank(self) -> int:
        return list(BudgetState).index(self)


def _amount(value: Decimal) -> str:
    """An amount as a person writes it: 100, 85.5, 0.000417."""
    return format(value.quantize(COST_QUANTUM).normalize(), "f")


@dataclass(frozen=True)
class Budget:
    """A user's spending limit in one currency, and the amount that warns before it."""

    currency: str
    limit: Decimal
    warning: Decimal

    def __post_init__(self) -> None:
        if self.currency not in CURRENCIES:
            raise InvalidField(
                "currency", f"must be one of {', '.join(CURRENCIES)}, got {self.currency!r}"
            )
        if self.limit < 0:
            raise InvalidField("limit", f"must be 0 or more, got {_amount(self.limit)}")
        if not 0 <= self.warning <= self.limit:
            raise InvalidField(
                "warning",
                f"must be between 0 and the limit {_amount(self.limit)}, "
                f"got {_amount(self.warning)}",
            )


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    spent: Decimal
    state: BudgetState
    message: str | None


def budget_status(budget: Budget, spent: Decimal) -> BudgetStatus:
    """Where ``spent`` (in the budget's currency) stands against it."""
    currency, limit = budget.currency, _amount(budget.limit)
    if spent >= budget.limit:
        state = BudgetState.EXCEEDED
        message = (
            f"spending limit reached: {_amount(spent)} {currency} spent of the {limit} "
            f"{currency} limit; the admin can raise it"
        )
    elif spent >= budget.warning:
        state = BudgetState.WARNING
        message = (
            f"spending near its limit: {_amount(spent)} {currency} spent of the {limit} "
            f"{currency} limit (warning at {_amount(budget.warning)} {currency})"
        )
    else:
        state, message = BudgetState.OK, None
    return BudgetStatus(budget, spent, state, message)


def budget_statuses(
    budgets: Iterable[Budget], spend: Mapping[str, Decimal]
) -> tuple[BudgetStatus, ...]:
    """Every budget's status against the spend per currency, worst first; a currency
    with no spend counts as 0."""
    statuses = [budget_status(b, spend.get(b.currency, Decimal(0))) for b in budgets]
    return tuple(sorted(statuses, key=lambda s: (-s.state.rank, s.budget.currency)))
