"""Which seconds a replica is billed for, and closing them into records at checkpoints.

Each test reads a replica's recorded events and asserts the billed seconds to the
second, as a user adding up their usage records would.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from moorage.clock import FakeClock
from moorage.models.metering import (
    Checkpoint,
    Interval,
    UsageRecord,
    billable_intervals,
    billed_seconds,
    checkpoint,
    tick,
)
from moorage.models.replicas import FailureReason, ReplicaEvent, ReplicaEventKind

K = ReplicaEventKind
# 10:00 UTC on the last day of January, so a day and a month end are near.
BASE = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def log(*steps: tuple[ReplicaEventKind, float], replica_id: str = "r-1") -> list[ReplicaEvent]:
    reason = {K.FAILED: FailureReason.EXITED}
    return [
        ReplicaEvent(replica_id, "ep-1", kind, at(seconds), reason=reason.get(kind))
        for kind, seconds in steps
    ]


def total(records: tuple[UsageRecord, ...]) -> int:
    return sum(record.seconds for record in records)


def test_billing_runs_from_started_to_stopped_not_while_waiting_for_capacity() -> None:
    events = log((K.REQUESTED, 0), (K.STARTED, 95.4), (K.READY, 130), (K.STOPPED, 3695.9))

    intervals = billable_intervals(events)

    # 95 s waiting for a GPU are free; (95, 3695] is one hour.
    assert intervals == (Interval(at(95), at(3695)),)
    assert billed_seconds(intervals, at(10_000)) == 3600


def test_ready_and_unready_change_nothing() -> None:
    events = log((K.STARTED, 0), (K.READY, 10), (K.UNREADY, 20), (K.READY, 30), (K.STOPPED, 60))

    assert billed_seconds(billable_intervals(events), at(100)) == 60


def test_a_running_replica_is_billed_up_to_now() -> None:
    clock = FakeClock(at(0))
    intervals = billable_intervals(log((K.REQUESTED, 0), (K.STARTED, 2), (K.READY, 9)))

    clock.advance(62.7)

    assert intervals == (Interval(at(2)),)
    assert billed_seconds(intervals, clock.now()) == 60


def test_crash_and_restart_bills_each_life_and_no_backoff() -> None:
    events = log(
        (K.STARTED, 0),
        (K.READY, 5),
        (K.FAILED, 100),  # exited; backoff 1.5 s
        (K.STARTED, 101.5),
        (K.READY, 110),
        (K.FAILED, 200.2),  # backoff 4 s
        (K.STARTED, 204.2),
        (K.STOPPED, 300),
    )

    intervals = billable_intervals(events)

    assert intervals == (
        Interval(at(0), at(100)),
        Interval(at(101), at(200)),
        Interval(at(204), at(300)),
    )
    assert billed_seconds(intervals, at(1000)) == 100 + 99 + 96


def test_a_replica_that_never_became_ready_is_billed_for_the_time_it_held_its_gpus() -> None:
    events = log((K.STARTED, 0), (K.FAILED, 30), (K.STARTED, 31), (K.FAILED, 61), (K.STOPPED, 62))

    assert billed_seconds(billable_intervals(events), at(100)) == 60


def test_a_replica_stopped_while_waiting_for_capacity_costs_nothing() -> None:
    events = log((K.REQUESTED, 0), (K.STOPPED, 5000))

    assert billable_intervals(events) == ()


def test_a_repeated_started_is_the_same_placement() -> None:
    events = log((K.STARTED, 0), (K.STARTED, 50), (K.STOPPED, 100))

    assert billable_intervals(events) == (Interval(at(0), at(100)),)


def test_instants_not_durations_are_rounded_to_the_second() -> None:
    # 0.3 s within second 10 bills nothing; 0.3 s across the tick at 12 bills one second.
    events = log((K.STARTED, 10.2), (K.FAILED, 10.5), (K.STARTED, 11.9), (K.FAILED, 12.2))

    assert billable_intervals(events) == (Interval(at(11), at(12)),)


def test_events_out_of_order_or_of_two_replicas_are_refused() -> None:
    with pytest.raises(ValueError, match=r"r-1: event stopped .* is before started"):
        billable_intervals(log((K.STARTED, 10), (K.STOPPED, 5)))
    mixed = log((K.STARTED, 0)) + log((K.STOPPED, 5), replica_id="r-2")
    with pytest.raises(ValueError, match="replicas r-1 and r-2 mixed"):
        billable_intervals(mixed)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        tick(datetime(2026, 1, 1))


def test_tick_floors_a_microsecond_before_the_second_exactly() -> None:
    assert tick(datetime(2026, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == tick(
        datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)
    )


def test_scale_bills_every_replica_for_its_own_time() -> None:
    replicas = {
        "r-1": log((K.STARTED, 0), (K.STOPPED, 3600), replica_id="r-1"),
        "r-2": log((K.STARTED, 600), (K.STOPPED, 3600), replica_id="r-2"),  # scaled up at 600
        "r-3": log((K.STARTED, 600), (K.STOPPED, 1800), replica_id="r-3"),  # down at 1800
    }

    seconds = {
        replica_id: billed_seconds(billable_intervals(events), at(7200))
        for replica_id, events in replicas.items()
    }

    assert seconds == {"r-1": 3600, "r-2": 3000, "r-3": 1200}
    assert sum(seconds.values()) == 7800


# Checkpoints


def test_checkpoints_close_usage_once_and_repeating_one_adds_nothing() -> None:
    clock = FakeClock(at(0))
    intervals = billable_intervals(log((K.STARTED, 0.5)))

    clock.advance(600.7)
    first = checkpoint("r-1", intervals, None, clock.now())
    again = checkpoint("r-1", intervals, first.billed_until, clock.now())
    clock.advance(300)
    second = checkpoint("r-1", intervals, first.billed_until, clock.now())

    assert first == Checkpoint((UsageRecord("r-1", at(0), at(600)),), at(600))
    assert again == Checkpoint((), at(600))
    assert second == Checkpoint((UsageRecord("r-1", at(600), at(900)),), at(900))


def test_a_checkpoint_lost_in_a_crash_is_billed_from_the_stored_billed_until() -> None:
    events = log((K.STARTED, 0), (K.READY, 20))
    stored = checkpoint("r-1", billable_intervals(events), None, at(60))

    # Computed at 120, then moorage was killed before writing it: nothing stored.
    checkpoint("r-1", billable_intervals(events), stored.billed_until, at(120))
    events += log((K.STOPPED, 150))
    after_restart = checkpoint("r-1", billable_intervals(events), stored.billed_until, at(180))

    assert total(stored.records) == 60
    assert after_restart.records == (UsageRecord("r-1", at(60), at(150)),)
    assert total(stored.records) + total(after_restart.records) == 150


def test_a_clock_that_steps_back_bills_nothing_and_keeps_billed_until() -> None:
    intervals = billable_intervals(log((K.STARTED, 0)))

    behind = checkpoint("r-1", intervals, at(600), at(500))

    assert behind == Checkpoint((), at(600))


def test_a_stopped_replica_is_billed_to_its_stop_whatever_the_checkpoint() -> None:
    intervals = billable_intervals(log((K.STARTED, 0), (K.STOPPED, 90)))

    done = checkpoint("r-1", intervals, at(60), at(4000))

    assert done.records == (UsageRecord("r-1", at(60), at(90)),)
    assert checkpoint("r-1", intervals, done.billed_until, at(9000)).records == ()


def test_usage_across_midnight_and_a_month_end_is_split_per_utc_day() -> None:
    # 23:30 on 31 January to 00:30 on 1 February, closed at one checkpoint.
    started = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    intervals = (Interval(started, started + timedelta(hours=1)),)
    midnight = datetime(2026, 2, 1, tzinfo=UTC)

    closed = checkpoint("r-1", intervals, None, started + timedelta(hours=2))

    assert closed.records == (
        UsageRecord("r-1", started, midnight),
        UsageRecord("r-1", midnight, started + timedelta(hours=1)),
    )
    assert [(r.day, r.seconds) for r in closed.records] == [
        (date(2026, 1, 31), 1800),
        (date(2026, 2, 1), 1800),
    ]


def test_a_checkpoint_at_midnight_and_one_after_bill_each_day_its_own_seconds() -> None:
    started = datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC)
    new_year = datetime(2027, 1, 1, tzinfo=UTC)
    intervals = (Interval(started),)

    first = checkpoint("r-1", intervals, None, new_year)
    second = checkpoint("r-1", intervals, first.billed_until, new_year + timedelta(seconds=90))

    assert [(r.day, r.seconds) for r in first.records + second.records] == [
        (date(2026, 12, 31), 60),
        (date(2027, 1, 1), 90),
    ]


def test_several_days_of_one_run_are_one_record_per_day() -> None:
    started = datetime(2026, 2, 27, 12, 0, tzinfo=UTC)
    intervals = (Interval(started, started + timedelta(days=2)),)

    closed = checkpoint("r-1", intervals, None, started + timedelta(days=3))

    assert [(r.day.isoformat(), r.seconds) for r in closed.records] == [
        ("2026-02-27", 43_200),
        ("2026-02-28", 86_400),
        ("2026-03-01", 43_200),
    ]
