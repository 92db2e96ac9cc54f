"""Billed seconds, GPU-seconds and cost per endpoint on ``/metrics``, as counters.

Read from the store (``usage_up_to``: stored records plus the seconds since the last
checkpoint) at most once every ``max_age_s``, so Prometheus scraping often costs the
store one read every few seconds whatever the scrape rate. Each series is a counter:
its value never goes down between scrapes of one server, since each new reading is
kept only where it is above the last one (a checkpoint committing between the two
queries of one read could otherwise show a second in neither, for one reading).
Deleted endpoints keep their series: their usage stays in the store.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from moorage.clock import Clock
from moorage.models.billing import GroupBy, Usage, usage_totals
from moorage.models.metering import EPOCH
from moorage.services.cached import Cached
from moorage.store.db import Database
from moorage.store.usage import UsageRepository

__all__ = ["Series", "SeriesTotal", "UsageCollector", "UsageMetricsView", "series_totals"]

log = logging.getLogger(__name__)

_NEVER = datetime(9999, 12, 31, tzinfo=UTC)
_SEP = "\x1f"  # joins a series' labels into one grouping key; no id holds it


@dataclass(frozen=True, order=True)
class Series:
    """One counter series: an endpoint's usage on one flavor, billed in one currency."""

    endpoint_id: str
    user_id: str
    flavor_id: str
    currency: str


@dataclass(frozen=True)
class SeriesTotal:
    seconds: int = 0
    gpu_seconds: int = 0
    cost: Decimal = Decimal(0)

    def at_least(self, other: SeriesTotal) -> SeriesTotal:
        """Each figure the larger of the two: what keeps a counter from going down."""
        return SeriesTotal(
            max(self.seconds, other.seconds),
            max(self.gpu_seconds, other.gpu_seconds),
            max(self.cost, other.cost),
        )


def series_totals(usage: Usage) -> dict[Series, SeriesTotal]:
    """All of ``usage`` by series, each cost rounded once as ``models/billing`` rounds
    every total (grouped by user over rates whose user is the series' labels)."""
    keyed = {
        replica_id: dataclasses.replace(
            rate,
            user_id=_SEP.join((rate.endpoint_id, rate.user_id, rate.flavor_id, rate.currency)),
        )
        for replica_id, rate in usage.rates.items()
    }
    found: dict[Series, SeriesTotal] = {}
    for total in usage_totals(usage.records, keyed, GroupBy.USER, EPOCH, _NEVER):
        endpoint_id, user_id, flavor_id, currency = total.key.split(_SEP)
        found[Series(endpoint_id, user_id, flavor_id, currency)] = SeriesTotal(
            total.instance_seconds, total.gpu_seconds, total.costs[currency]
        )
    return found


class UsageMetricsView:
    """Every series' totals up to now, as of at most ``max_age_s`` ago, never below
    what an earlier call returned."""

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
        self._cached: Cached[dict[Series, SeriesTotal]] = Cached(
            self._refresh, {}, max_age_s=max_age_s, monotonic=monotonic
        )

    def current(self) -> Mapping[Series, SeriesTotal]:
        return dict(self._cached.current())

    def _refresh(self) -> dict[Series, SeriesTotal]:
        """A fresh reading, each series kept at or above what it showed before."""
        merged = dict(self._cached.current_value)
        for series, total in self._read().items():
            merged[series] = total.at_least(merged.get(series, SeriesTotal()))
        return merged

    def _read(self) -> dict[Series, SeriesTotal]:
        with self.db.session() as session:
            usage = UsageRepository(session).up_to(self.clock.now())
        return series_totals(usage)


def usage_families(totals: Mapping[Series, SeriesTotal]) -> list[Metric]:
    """The three counters; seconds are added over currencies (an endpoint's currency
    may change between its replicas), cost is per currency."""
    labels = ["endpoint_id", "user_id", "flavor_id"]
    seconds = CounterMetricFamily(
        "moorage_billed_seconds",
        "Instance-seconds billed (whole seconds a replica held its resources).",
        labels=labels,
    )
    gpu_seconds = CounterMetricFamily(
        "moorage_billed_gpu_seconds",
        "GPU-seconds billed: instance-seconds times the replica's gpu_num.",
        labels=labels,
    )
    cost = CounterMetricFamily(
        "moorage_cost",
        "Cost billed, in the currency named (rounded to 6 decimal places).",
        labels=[*labels, "currency"],
    )
    by_endpoint: dict[tuple[str, str, str], SeriesTotal] = {}
    for series in sorted(totals):
        total = totals[series]
        key = (series.endpoint_id, series.user_id, series.flavor_id)
        before = by_endpoint.get(key, SeriesTotal())
        by_endpoint[key] = SeriesTotal(
            before.seconds + total.seconds, before.gpu_seconds + total.gpu_seconds
        )
        cost.add_metric([*key, series.currency], float(total.cost))
    for key, total in by_endpoint.items():
        seconds.add_metric(list(key), total.seconds)
        gpu_seconds.add_metric(list(key), total.gpu_seconds)
    return [seconds, gpu_seconds, cost]


class UsageCollector(Collector):
    """``usage_families`` at scrape time, from ``totals`` (a cache, not the store)."""

    def __init__(self, totals: Callable[[], Mapping[Series, SeriesTotal]]) -> None:
        self._totals = totals
        self._last: Mapping[Series, SeriesTotal] = {}

    def describe(self) -> Iterator[Metric]:
        # Names only, so registering reads nothing from the store.
        yield from usage_families({})

    def collect(self) -> Iterator[Metric]:
        try:
            self._last = self._totals()
        except Exception:  # the store is away: the last values still show
            log.warning("usage could not be read for /metrics", exc_info=True)
        yield from usage_families(self._last)
