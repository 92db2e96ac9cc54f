"""Spending limits, pure: which usage a period counts, where a spend stands, what a
stop by moorage says, and what a bad limit is refused with. A fake clock is a plain
``now``: nothing here reads the time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from moorage.errors import InvalidField
from moorage.models.billing import Usage, fix_rate
from moorage.models.budgets import (
    Budget,
    BudgetPeriod,
    BudgetState,
    spend_by_currency,
    statuses_at,
    window_start,
)
from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint, EndpointStatus
from moorage.models.events import changes
from moorage.models.flavors import Flavor
from moorage.models.metering import UsageRecord
from moorage.models.status import StatusPolicy, derive_status

H100 = Flavor(
    "h100", "H100", "1", "h100", capacity=8, node_max_gpu=8, prices={"usd": 3.6, "cny": 36.0}
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def usage(*runs: tuple[str, str, str]) -> Usage:
    """One replica per (currency, start, end), 1 GPU on H100: 3.6 usd or 36 cny an hour,
    0.001 usd or 0.01 cny a second."""
    found = Usage()
    for n, (currency, start, end) in enumerate(runs):
        rate = fix_rate(
            replica_id=f"r-{n}",
            endpoint_id="ep-1",
            user_id="alice",
            flavor=H100,
            gpu_num=1,
            payment_type=currency,
        )
        found.rates[rate.replica_id] = rate
        found.records.append(UsageRecord(rate.replica_id, utc(start), utc(end)))
    return found


def test_a_month_window_starts_on_the_first_at_midnight_utc() -> None:
    assert window_start(BudgetPeriod.MONTH, utc("2026-03-31T23:59:59")) == utc("2026-03-01")
    assert window_start(BudgetPeriod.MONTH, utc("2026-04-01T00:00:00")) == utc("2026-04-01")
    # 01:30 on 1 April at UTC+2 is still 31 March in UTC.
    plus_two = datetime(2026, 4, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert window_start(BudgetPeriod.MONTH, plus_two) == utc("2026-03-01")
    assert window_start(BudgetPeriod.MONTH, utc("2026-12-31T23:00:00")) == utc("2026-12-01")
    assert window_start(BudgetPeriod.TOTAL, utc("2026-04-01T00:00:00")) == utc("1970-01-01")


def test_a_monthly_limit_counts_this_month_only_and_is_free_again_on_the_first() -> None:
    # 23:00 on 31 March to 01:00 on 1 April: an hour each side of the month end.
    ran = usage(("usd", "2026-03-31T23:00:00", "2026-04-01T01:00:00"))
    monthly = Budget("usd", Decimal("5"), Decimal("3"))
    total = Budget("usd", Decimal("5"), Decimal("3"), BudgetPeriod.TOTAL)

    march = statuses_at([monthly], ran, utc("2026-03-31T23:59:59"))[0]
    first = statuses_at([monthly], ran, utc("2026-04-01T00:00:00"))[0]
    after = statuses_at([monthly, total], ran, utc("2026-04-01T01:00:00"))

    assert (march.spent, march.state) == (Decimal("3.599"), BudgetState.WARNING)
    assert (first.spent, first.state) == (Decimal(0), BudgetState.OK)
    by_period = {s.budget.period: s for s in after}
    assert by_period[BudgetPeriod.MONTH].spent == Decimal("3.6")  # April's hour only
    assert by_period[BudgetPeriod.TOTAL].spent == Decimal("7.2")
    assert by_period[BudgetPeriod.TOTAL].state is BudgetState.EXCEEDED
    assert after[0].budget.period is BudgetPeriod.TOTAL, "worst first"


def test_spend_is_per_currency_and_only_up_to_now() -> None:
    ran = usage(
        ("usd", "2026-05-01T09:00:00", "2026-05-01T10:00:00"),
        ("cny", "2026-05-01T09:00:00", "2026-05-01T09:00:10"),
    )

    spend = spend_by_currency(ran, utc("2026-05-01"), utc("2026-05-01T09:30:00"))

    assert spend == {"usd": Decimal("1.8"), "cny": Decimal("0.1"), "nmt": Decimal(0)}


def test_ok_then_warning_then_exceeded_as_the_clock_moves() -> None:
    ran = usage(("usd", "2026-05-01T09:00:00", "2026-05-01T10:00:00"))
    budget = Budget("usd", Decimal("1"), Decimal("0.8"))

    def state_at(seconds: int) -> BudgetState:
        now = utc("2026-05-01T09:00:00") + timedelta(seconds=seconds)
        return statuses_at([budget], ran, now)[0].state

    assert [state_at(s) for s in (799, 800, 999, 1000)] == [
        BudgetState.OK,
        BudgetState.WARNING,
        BudgetState.WARNING,
        BudgetState.EXCEEDED,
    ]
    exceeded = statuses_at([budget], ran, utc("2026-05-01T09:20:00"))[0]
    assert exceeded.message == (
        "spending limit reached: 1.2 usd spent of the 1 usd limit; the admin can raise it"
    )


def test_a_zero_limit_is_exceeded_before_anything_is_spent() -> None:
    status = statuses_at([Budget("usd", Decimal(0), Decimal(0))], Usage(), utc("2026-05-01"))[0]

    assert status.state is BudgetState.EXCEEDED


def test_a_bad_amount_names_the_field_and_what_is_allowed() -> None:
    with pytest.raises(InvalidField, match="limit: must be at most 1000000000000, got"):
        Budget("usd", Decimal("1e12") + 1, Decimal(0))
    with pytest.raises(InvalidField, match=r"limit: may have at most 6 decimals, got 1\.0000001"):
        Budget("usd", Decimal("1.0000001"), Decimal(0))
    with pytest.raises(InvalidField, match="warning: may have at most 6 decimals"):
        Budget("usd", Decimal(1), Decimal("0.0000001"))
    with pytest.raises(ValueError, match="'week'"):
        Budget("usd", Decimal(1), Decimal(0), "week")  # type: ignore[arg-type]
    assert Budget("usd", Decimal("1e12"), Decimal("0.000001")).limit == Decimal("1e12")


def _endpoint(**fields: object) -> Endpoint:
    base = Endpoint(
        service_id="ep-1",
        user_id="alice",
        name="chat",
        description="",
        payment_type="usd",
        flavor_id="h100",
        scale_type="manual",
        target_instance_number=1,
        deploy=DeploySpec(image_url="img", command="serve", port=8080),
        revision=1,
        desired_state=DesiredState.RUNNING,
        service_type="normal",
        created_at=utc("2026-05-01"),
        updated_at=utc("2026-05-01"),
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def test_an_endpoint_moorage_stopped_says_why_and_its_event_says_so_too() -> None:
    reason = "spending limit reached: 1 usd spent of the 1 usd limit; the admin can raise it"
    running = _endpoint()
    stopped = _endpoint(desired_state=DesiredState.STOPPED, stop_reason=reason)

    status = derive_status(stopped, [], StatusPolicy())
    [event] = changes(running, stopped, utc("2026-05-01T09:00:00"))

    assert (status.status, status.status_info) == (EndpointStatus.STOPPED, reason)
    assert event.message == f"stopped by moorage: {reason}; its replicas stop"
    user_stopped = _endpoint(desired_state=DesiredState.STOPPED)
    assert derive_status(user_stopped, [], StatusPolicy()).status_info is None
    [event] = changes(running, user_stopped, utc("2026-05-01T09:00:00"))
    assert event.message == "stopped: its replicas stop"
