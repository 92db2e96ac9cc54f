"""Spending limits: whether a user's spend in a currency is ok, near its limit, or over it.

The admin sets a limit per user and currency, over a period (the UTC calendar month,
or all time), and a warning amount at or below it. The spend is what the user's usage
in that currency cost from the period's start up to now. A
spend at the warning or above is ``warning``; at the limit or above is ``exceeded``
(the limit is what may be spent, so reaching it is enough). Each message names the
limit and the spend, so whoever shows it (``status_info``, a refusal) need not
rebuild it. Which endpoints stop and which requests are refused is the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from moorage.errors import InvalidField
from moorage.models.billing import COST_QUANTUM, GroupBy, Usage, month_start, usage_totals
from moorage.models.flavors import CURRENCIES
from moorage.models.metering import EPOCH
from moorage.models.states import BudgetPeriod, BudgetState

__all__ = [
    "MAX_AMOUNT",
    "Budget",
    "BudgetPeriod",
    "BudgetState",
    "BudgetStatus",
    "budget_status",
    "budget_statuses",
    "spend_by_currency",
    "statuses_at",
    "window_start",
]

# The largest limit or warning the admin may set; amounts carry at most six decimals
# (COST_QUANTUM), as costs do, so a limit compares exactly with a spend.
MAX_AMOUNT = Decimal(10) ** 12


def window_start(period: BudgetPeriod, now: datetime) -> datetime:
    """Where the spend a budget counts begins: midnight UTC on the first of ``now``'s
    month, or the epoch (all time). A month's limit is free again on the first."""
    if period is BudgetPeriod.MONTH:
        return month_start(now)
    return EPOCH


def _amount(value: Decimal) -> str:
    """An amount as a person writes it: 100, 85.5, 0.000417."""
    return format(value.quantize(COST_QUANTUM).normalize(), "f")


@dataclass(frozen=True)
class Budget:
    """A user's spending limit in one currency, and the amount that warns before it."""

    currency: str
    limit: Decimal
    warning: Decimal
    period: BudgetPeriod = BudgetPeriod.MONTH

    def __post_init__(self) -> None:
        if self.currency not in CURRENCIES:
            raise InvalidField(
                "currency", f"must be one of {', '.join(CURRENCIES)}, got {self.currency!r}"
            )
        # Read back from the store as a plain string.
        object.__setattr__(self, "period", BudgetPeriod(self.period))
        if self.limit < 0:
            raise InvalidField("limit", f"must be 0 or more, got {_amount(self.limit)}")
        if self.limit > MAX_AMOUNT:
            raise InvalidField("limit", f"must be at most {MAX_AMOUNT:f}, got {self.limit:f}")
        if not 0 <= self.warning <= self.limit:
            raise InvalidField(
                "warning",
                f"must be between 0 and the limit {_amount(self.limit)}, "
                f"got {_amount(self.warning)}",
            )
        for name, value in (("limit", self.limit), ("warning", self.warning)):
            if value != value.quantize(COST_QUANTUM):
                raise InvalidField(name, f"may have at most 6 decimals, got {value:f}")


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
    return _worst_first(budget_status(b, spend.get(b.currency, Decimal(0))) for b in budgets)


def _worst_first(statuses: Iterable[BudgetStatus]) -> tuple[BudgetStatus, ...]:
    return tuple(sorted(statuses, key=lambda s: (-s.state.rank, s.budget.currency)))


def spend_by_currency(usage: Usage, start: datetime, now: datetime) -> dict[str, Decimal]:
    """What ``usage`` (one user's) cost in [start, now), per currency, each rounded once."""
    spend = dict.fromkeys(CURRENCIES, Decimal(0))
    for total in usage_totals(usage.records, usage.rates, GroupBy.USER, start, now):
        for currency, amount in total.costs.items():
            spend[currency] += amount
    return spend


def statuses_at(budgets: Iterable[Budget], usage: Usage, now: datetime) -> tuple[BudgetStatus, ...]:
    """Each of a user's budgets against their ``usage`` in its own period up to ``now``,
    worst first."""
    spends: dict[BudgetPeriod, dict[str, Decimal]] = {}  # one sum per period, not per budget
    statuses = []
    for budget in budgets:
        if budget.period not in spends:
            spends[budget.period] = spend_by_currency(usage, window_start(budget.period, now), now)
        statuses.append(budget_status(budget, spends[budget.period][budget.currency]))
    return _worst_first(statuses)
