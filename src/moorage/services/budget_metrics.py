"""Spending limits on ``/metrics``: each budget's limit, warning, spend and state, as
gauges an operator can alert on (``moorage_budget_state`` 1 is warning, 2 exceeded).

Read from the store at most once every ``max_age_s``, like the usage counters, so a
frequent scrape costs the store one read of every budgeted user's spend every few
seconds. A store that cannot be read leaves the last values showing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from moorage.clock import Clock
from moorage.models.budgets import BudgetStatus
from moorage.services.cached import Cached
from moorage.store.budgets import BudgetRepository
from moorage.store.db import Database

__all__ = ["BudgetCollector", "BudgetMetricsView", "budget_families"]

log = logging.getLogger(__name__)

UserStatus = tuple[str, BudgetStatus]


class BudgetMetricsView:
    """Every budget's status as of at most ``max_age_s`` ago."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        max_age_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.clock = clock
        self._cached: Cached[list[UserStatus]] = Cached(
            self._read, [], max_age_s=max_age_s, monotonic=monotonic
        )

    def current(self) -> Sequence[UserStatus]:
        return list(self._cached.current())

    def _read(self) -> list[UserStatus]:
        now = self.clock.now()
        with self.db.session() as session:
            budgets = BudgetRepository(session)
            return [
                (user_id, status)
                for user_id in sorted(budgets.by_user())
                for status in budgets.statuses(user_id, now)
            ]


def budget_families(statuses: Sequence[UserStatus]) -> list[Metric]:
    labels = ["user_id", "currency", "period"]
    limit = GaugeMetricFamily(
        "moorage_budget_limit", "A user's spending limit in a currency.", labels=labels
    )
    warning = GaugeMetricFamily(
        "moorage_budget_warning", "The spend at which the limit warns.", labels=labels
    )
    spent = GaugeMetricFamily(
        "moorage_budget_spent",
        "What the user has spent in the limit's period (this UTC month, or all time).",
        labels=labels,
    )
    state = GaugeMetricFamily(
        "moorage_budget_state",
        "0 under the warning, 1 at or past the warning, 2 at the limit (endpoints stopped).",
        labels=labels,
    )
    for user_id, status in statuses:
        values = [user_id, status.budget.currency, status.budget.period.value]
        limit.add_metric(values, float(status.budget.limit))
        warning.add_metric(values, float(status.budget.warning))
        spent.add_metric(values, float(status.spent))
        state.add_metric(values, status.state.rank)
    return [limit, warning, spent, state]


class BudgetCollector(Collector):
    """``budget_families`` at scrape time, from ``statuses`` (a cache, not the store)."""

    def __init__(self, statuses: Callable[[], Sequence[UserStatus]]) -> None:
        self._statuses = statuses
        self._last: Sequence[UserStatus] = []

    def describe(self) -> Iterator[Metric]:
        yield from budget_families([])  # names only: registering reads nothing

    def collect(self) -> Iterator[Metric]:
        try:
            self._last = self._statuses()
        except Exception:  # the store is away: the last values still show
            log.warning("spending limits could not be read for /metrics", exc_info=True)
        yield from budget_families(self._last)
