"""Pricing usage records, and adding them up by endpoint, day, flavor or user.

A flavor's price (``billing.<currency>_price_unit``) is per GPU per hour: the
reference bills by "the GPU type, number of instances and the duration", and
moorage sells whole GPUs. An instance with ``gpu_num`` k costs k times the price; a
flavor without GPUs (``gpu_num`` 0) is priced per instance. The currency is the
endpoint's ``payment_type``.

The price is fixed in a :class:`ReplicaRate` when the replica is first placed and
held for its life, restarts included, so a price change bills new replicas only and
a bill can be recomputed from its records long after the flavor changed.

Money is ``Decimal`` throughout; cost is computed from whole seconds and rounded once
per total, to :data:`COST_QUANTUM`, so adding records in any order or grouping gives
the same amount to the last digit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from moorage.errors import InvalidField
from moorage.models.flavors import CURRENCIES, Flavor
from moorage.models.metering import UsageRecord, tick
from moorage.models.states import GroupBy

__all__ = [
    "COST_QUANTUM",
    "GroupBy",
    "ReplicaRate",
    "Usage",
    "UsageTotal",
    "cost",
    "fix_rate",
    "month_start",
    "usage_totals",
]

# The reference's prices carry up to six decimals (nmt 0.147164); so do costs.
COST_QUANTUM = Decimal("0.000001")
_SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class ReplicaRate:
    """What one replica costs, fixed when it was first placed.

    ``price_per_hour`` is the flavor's price in ``currency`` then: per GPU, or per
    instance when ``gpu_num`` is 0.
    """

    replica_id: str
    endpoint_id: str
    user_id: str
    flavor_id: str
    gpu_num: int
    currency: str
    price_per_hour: Decimal

    def __post_init__(self) -> None:
        if self.currency not in CURRENCIES:
            raise InvalidField(
                "payment_type", f"must be one of {', '.join(CURRENCIES)}, got {self.currency!r}"
            )
        if self.gpu_num < 0:
            raise InvalidField("deploy_metadata.gpu_num", f"must be 0 or more, got {self.gpu_num}")
        if self.price_per_hour < 0:
            raise InvalidField("billing", f"a price must be 0 or more, got {self.price_per_hour}")

    @property
    def instance_price_per_hour(self) -> Decimal:
        """What one hour of this replica costs: the price times its GPUs (at least 1)."""
        return self.price_per_hour * max(self.gpu_num, 1)


def fix_rate(
    *,
    replica_id: str,
    endpoint_id: str,
    user_id: str,
    flavor: Flavor,
    gpu_num: int,
    payment_type: str,
) -> ReplicaRate:
    """The rate a replica placed now is billed at for its life.

    A currency the flavor names no price in is free, as an unpriced flavor is. The
    float price is read through its shortest decimal spelling (0.3, not
    0.299999999999999988897769753748...), which is what the operator wrote.
    """
    return ReplicaRate(
        replica_id=replica_id,
        endpoint_id=endpoint_id,
        user_id=user_id,
        flavor_id=flavor.flavor_id,
        gpu_num=gpu_num,
        currency=payment_type,
        price_per_hour=Decimal(repr(flavor.price_per_hour(payment_type))),
    )


def month_start(now: datetime) -> datetime:
    """Midnight UTC on the first day of ``now``'s UTC month: where "this month" starts."""
    utc = now.astimezone(UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def cost(rate: ReplicaRate, seconds: int) -> Decimal:
    """What ``seconds`` of this replica cost, rounded to :data:`COST_QUANTUM`."""
    return _rounded(rate.instance_price_per_hour * seconds)


def _rounded(price_seconds: Decimal) -> Decimal:
    """Price-per-hour x seconds, in the currency, rounded once (half up)."""
    return (price_seconds / _SECONDS_PER_HOUR).quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Usage:
    """Usage records and the rates of their replicas, deleted endpoints' included:
    what :func:`usage_totals` adds up."""

    records: list[UsageRecord] = field(default_factory=list)
    rates: dict[str, ReplicaRate] = field(default_factory=dict)
    # The replicas billing at the moment read (placed and not failed or stopped since),
    # at their rates: what an endpoint costs per hour now.
    billing_now: dict[str, ReplicaRate] = field(default_factory=dict)


@dataclass(frozen=True)
class UsageTotal:
    """Usage of one group. ``key`` is the endpoint id, the UTC day (``2026-01-31``),
    the flavor id or the user id; ``costs`` has every currency, 0 where none was used."""

    key: str
    instance_seconds: int
    gpu_seconds: int
    costs: Mapping[str, Decimal] = field(default_factory=dict)


def _key(record: UsageRecord, rate: ReplicaRate, group_by: GroupBy) -> str:
    if group_by is GroupBy.ENDPOINT:
        return rate.endpoint_id
    if group_by is GroupBy.DAY:
        return record.day.isoformat()
    if group_by is GroupBy.FLAVOR:
        return rate.flavor_id
    return rate.user_id


def usage_totals(
    records: Iterable[UsageRecord],
    rates: Mapping[str, ReplicaRate],
    group_by: GroupBy,
    start: datetime,
    end: datetime,
) -> tuple[UsageTotal, ...]:
    """Totals of the seconds billed in [start, end), by ``group_by``, sorted by key.

    ``start`` and ``end`` are taken to the whole second below; a record across either
    is cut, so a window of days never takes a second from the day next to it.
    ``rates`` holds every record's replica, deleted endpoints' included.
    """
    low, high = tick(start), tick(end)
    seconds: dict[str, int] = {}
    gpu_seconds: dict[str, int] = {}
    priced: dict[str, dict[str, Decimal]] = {}
    for record in records:
        rate = rates.get(record.replica_id)
        if rate is None:
            raise ValueError(f"usage of replica {record.replica_id} has no rate")
        billed = min(tick(record.end), high) - max(tick(record.start), low)
        if billed <= 0:
            continue
        key = _key(record, rate, group_by)
        seconds[key] = seconds.get(key, 0) + billed
        gpu_seconds[key] = gpu_seconds.get(key, 0) + billed * rate.gpu_num
        sums = priced.setdefault(key, dict.fromkeys(CURRENCIES, Decimal(0)))
        sums[rate.currency] += rate.instance_price_per_hour * billed
    return tuple(
        UsageTotal(
            key=key,
            instance_seconds=seconds[key],
            gpu_seconds=gpu_seconds[key],
            costs={currency: _rounded(sums) for currency, sums in priced[key].items()},
        )
        for key in sorted(seconds)
    )
