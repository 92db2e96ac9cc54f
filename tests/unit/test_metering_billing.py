"""Pricing usage and adding it up: the worked examples of docs/billing.md, price
changes, grouping over a window, and spending limits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from moorage.errors import InvalidField
from moorage.models.billing import GroupBy, ReplicaRate, UsageTotal, cost, fix_rate, usage_totals
from moorage.models.budgets import Budget, BudgetState, budget_status, budget_statuses
from moorage.models.flavors import Flavor
from moorage.models.metering import Interval, UsageRecord, checkpoint

H100 = Flavor(
    flavor_id="h100",
    display_name="H100",
    cluster_id="1",
    cluster_flavor_id="h100",
    capacity=8,
    node_max_gpu=8,
    prices={"usd": 2.5, "cny": 18.0},
)
# The reference's own flavor and prices.
RTX_4090 = Flavor(
    flavor_id="4090",
    display_name="NVIDIA_GeForce_RTX_4090",
    cluster_id="1",
    cluster_flavor_id="4090",
    capacity=2,
    node_max_gpu=2,
    prices={"cny": 2.2, "usd": 0.3, "nmt": 0.147164},
)
CPU = Flavor("cpu", "cpu-small", "1", "cpu", capacity=4, node_max_gpu=0, prices={"usd": 0.04})


def rate(
    replica_id: str,
    flavor: Flavor = H100,
    *,
    gpu_num: int = 1,
    currency: str = "usd",
    endpoint_id: str = "ep-1",
    user_id: str = "alice",
) -> ReplicaRate:
    return fix_rate(
        replica_id=replica_id,
        endpoint_id=endpoint_id,
        user_id=user_id,
        flavor=flavor,
        gpu_num=gpu_num,
        payment_type=currency,
    )


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def closed(replica_id: str, start: str, end: str) -> tuple[UsageRecord, ...]:
    """The records of one run, closed by a checkpoint well after it."""
    run = (Interval(utc(start), utc(end)),)
    return checkpoint(replica_id, run, None, utc(end) + timedelta(days=1)).records


def totals(
    records: Iterable[UsageRecord],
    rates: Iterable[ReplicaRate],
    group_by: GroupBy,
    start: str = "2026-01-01T00:00:00",
    end: str = "2026-03-01T00:00:00",
) -> tuple[UsageTotal, ...]:
    by_replica = {r.replica_id: r for r in rates}
    return usage_totals(records, by_replica, group_by, utc(start), utc(end))


# The worked examples in docs/billing.md, one per currency.


def test_usd_example_two_gpus_for_an_hour_and_a_half() -> None:
    records = closed("r-1", "2026-01-15T09:00:00.400", "2026-01-15T10:30:00.900")

    (endpoint,) = totals(records, [rate("r-1", gpu_num=2)], GroupBy.ENDPOINT)

    assert endpoint == UsageTotal(
        "ep-1",
        instance_seconds=5400,
        gpu_seconds=10_800,
        costs={"usd": Decimal("7.500000"), "cny": Decimal(0), "nmt": Decimal(0)},
    )


def test_cny_example_scaled_to_two_replicas() -> None:
    records = closed("r-1", "2026-01-15T09:00:00", "2026-01-15T09:30:00") + closed(
        "r-2", "2026-01-15T09:10:00", "2026-01-15T09:25:00"
    )
    rates = [rate(r, RTX_4090, currency="cny") for r in ("r-1", "r-2")]

    (endpoint,) = totals(records, rates, GroupBy.ENDPOINT)

    assert (endpoint.instance_seconds, endpoint.gpu_seconds) == (2700, 2700)
    assert endpoint.costs["cny"] == Decimal("1.650000")


def test_nmt_example_across_a_month_end_rounds_each_total_once() -> None:
    records = closed("r-1", "2026-01-31T23:59:00", "2026-02-01T00:01:00.500")
    rates = [rate("r-1", RTX_4090, currency="nmt")]

    by_day = totals(records, rates, GroupBy.DAY)
    (whole,) = totals(records, rates, GroupBy.ENDPOINT)

    assert [(d.key, d.instance_seconds, d.costs["nmt"]) for d in by_day] == [
        ("2026-01-31", 60, Decimal("0.002453")),
        ("2026-02-01", 60, Decimal("0.002453")),
    ]
    # 120 s x 0.147164 / 3600 = 0.0049054666..., rounded once, not the days' 0.004906.
    assert (whole.instance_seconds, whole.costs["nmt"]) == (120, Decimal("0.004905"))


def test_price_is_per_gpu_and_a_flavor_without_gpus_is_priced_per_instance() -> None:
    assert cost(rate("r-1", gpu_num=4), 3600) == Decimal("10.000000")
    assert cost(rate("r-2", CPU, gpu_num=0), 3600) == Decimal("0.040000")


def test_a_cpu_replica_has_instance_seconds_but_no_gpu_seconds() -> None:
    records = closed("r-1", "2026-01-15T09:00:00", "2026-01-15T10:00:00")

    (endpoint,) = totals(records, [rate("r-1", CPU, gpu_num=0)], GroupBy.ENDPOINT)

    assert (endpoint.instance_seconds, endpoint.gpu_seconds) == (3600, 0)
    assert endpoint.costs["usd"] == Decimal("0.040000")


def test_float_prices_are_read_as_the_operator_wrote_them() -> None:
    assert rate("r-1", RTX_4090).price_per_hour == Decimal("0.3")
    assert rate("r-1", RTX_4090, currency="nmt").price_per_hour == Decimal("0.147164")


def test_a_currency_the_flavor_has_no_price_in_is_free() -> None:
    assert cost(rate("r-1", H100, currency="nmt"), 3600) == Decimal(0)


def test_a_price_change_bills_new_replicas_only() -> None:
    old = rate("r-1", H100)  # placed at 2.5 usd per GPU-hour
    repriced = replace(H100, prices={"usd": 3.0})
    new = rate("r-2", repriced)  # scaled up after the change
    # r-1 crashed and restarted after the change: same replica, same rate.
    records = (
        closed("r-1", "2026-01-15T09:00:00", "2026-01-15T10:00:00")
        + closed("r-1", "2026-01-15T11:00:05", "2026-01-15T12:00:05")
        + closed("r-2", "2026-01-15T11:00:00", "2026-01-15T12:00:00")
    )

    (endpoint,) = totals(records, [old, new], GroupBy.ENDPOINT)

    assert endpoint.instance_seconds == 3 * 3600
    assert endpoint.costs["usd"] == Decimal("8.000000")  # 2 h at 2.5, 1 h at 3.0


def test_totals_by_user_flavor_and_day_over_a_window_cut_records_at_its_edges() -> None:
    rates = [
        rate("a-1", H100, endpoint_id="ep-a", user_id="alice"),
        rate("b-1", RTX_4090, endpoint_id="ep-b", user_id="bob", currency="cny"),
    ]
    records = closed("a-1", "2026-01-30T22:00:00", "2026-02-01T02:00:00") + closed(
        "b-1", "2026-01-31T12:00:00", "2026-01-31T13:00:00"
    )
    window = {"start": "2026-01-31T00:00:00", "end": "2026-02-01T00:00:00"}

    by_user = totals(records, rates, GroupBy.USER, **window)
    by_flavor = totals(records, rates, GroupBy.FLAVOR, **window)
    by_day = totals(records, rates, GroupBy.DAY)

    assert [(t.key, t.instance_seconds, t.costs["usd"], t.costs["cny"]) for t in by_user] == [
        ("alice", 86_400, Decimal("60.000000"), Decimal(0)),
        ("bob", 3600, Decimal(0), Decimal("2.200000")),
    ]
    assert [(t.key, t.gpu_seconds) for t in by_flavor] == [("4090", 3600), ("h100", 86_400)]
    assert [(t.key, t.instance_seconds) for t in by_day] == [
        ("2026-01-30", 7200),
        ("2026-01-31", 86_400 + 3600),
        ("2026-02-01", 7200),
    ]


def test_usage_of_a_replica_with_no_rate_is_an_error() -> None:
    records = closed("r-9", "2026-01-15T09:00:00", "2026-01-15T10:00:00")

    with pytest.raises(ValueError, match="replica r-9 has no rate"):
        totals(records, [], GroupBy.USER)


def test_a_bad_currency_or_gpu_num_names_the_field() -> None:
    with pytest.raises(InvalidField, match="payment_type: must be one of usd, cny, nmt, got 'eur'"):
        rate("r-1", currency="eur")
    with pytest.raises(InvalidField, match=r"deploy_metadata\.gpu_num: must be 0 or more, got -1"):
        rate("r-1", gpu_num=-1)


# Spending limits


def test_budget_is_ok_then_warns_then_is_exceeded_from_real_usage() -> None:
    budget = Budget("usd", limit=Decimal(100), warning=Decimal(80))
    two_gpus = rate("r-1", gpu_num=2)  # 5 usd an hour

    def spent_after(hours: int) -> Decimal:
        return cost(two_gpus, hours * 3600)

    assert budget_status(budget, spent_after(15)).state is BudgetState.OK
    warning = budget_status(budget, spent_after(16))
    exceeded = budget_status(budget, spent_after(20))

    assert warning.state is BudgetState.WARNING
    assert warning.message == (
        "spending near its limit: 80 usd spent of the 100 usd limit (warning at 80 usd)"
    )
    assert exceeded.state is BudgetState.EXCEEDED
    assert exceeded.message == (
        "spending limit reached: 100 usd spent of the 100 usd limit; the admin can raise it"
    )


def test_budgets_in_several_currencies_are_listed_worst_first() -> None:
    budgets = [
        Budget("usd", Decimal(100), Decimal(80)),
        Budget("cny", Decimal("50.5"), Decimal(40)),
        Budget("nmt", Decimal(10), Decimal(5)),
    ]

    statuses = budget_statuses(budgets, {"cny": Decimal("50.5"), "usd": Decimal("81.25")})

    assert [(s.budget.currency, s.state) for s in statuses] == [
        ("cny", BudgetState.EXCEEDED),
        ("usd", BudgetState.WARNING),
        ("nmt", BudgetState.OK),
    ]
    assert statuses[0].message is not None
    assert "50.5 cny spent of the 50.5 cny limit" in statuses[0].message
    assert statuses[2].message is None


def test_a_bad_budget_names_the_field() -> None:
    with pytest.raises(InvalidField, match="currency: must be one of usd, cny, nmt, got 'eur'"):
        Budget("eur", Decimal(1), Decimal(1))
    with pytest.raises(InvalidField, match="limit: must be 0 or more, got -1"):
        Budget("usd", Decimal(-1), Decimal(0))
    with pytest.raises(InvalidField, match="warning: must be between 0 and the limit 100, got 120"):
        Budget("usd", Decimal(100), Decimal(120))
