"""Metering: which seconds a replica is billed for, and closing them into usage records.

A replica is billed while it holds its resources: from its ``started`` event (it was
placed, its GPUs reserved, the runtime asked to run it) until its next ``failed`` or
``stopped``. Waiting for capacity (``requested``) and a restart backoff (after
``failed``, until ``started`` again) are not billed; ``ready`` and ``unready`` change
nothing, so a replica that never became ready is billed for the time it held its GPUs.
``docs/billing.md`` says why.

Time is counted in whole UTC seconds, by the ticks of the clock: a replica billing
over (a, b] is billed one second for each whole-second tick T with a < T <= b, that is
``floor(b) - floor(a)`` seconds. Because instants, not durations, are rounded, the
pieces of an interval (cut at checkpoints or at midnight) always add up to the whole,
and no second can be counted by two pieces.

Usage is closed into records at checkpoints: :func:`checkpoint` turns the ticks in
(billed_until, now] into records that never cross a UTC midnight. Writing the records
and the new ``billed_until`` in one transaction makes a checkpoint safe to repeat:
run again, or after a crash, from the stored ``billed_until`` it bills exactly the
seconds that were not billed yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from moorage.models.replicas import ReplicaEvent
from moorage.models.states import ReplicaEventKind

__all__ = [
    "EPOCH",
    "Checkpoint",
    "Interval",
    "UsageRecord",
    "billable_intervals",
    "billed_seconds",
    "checkpoint",
    "tick",
]

# Where billing time starts: usage over "all time" is usage since then.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_DAY_S = 86_400
_OPENS = frozenset({ReplicaEventKind.STARTED})
_CLOSES = frozenset({ReplicaEventKind.FAILED, ReplicaEventKind.STOPPED})


def tick(moment: datetime) -> int:
    """Whole UTC seconds since the epoch, rounded down.

    Integer arithmetic on ``timedelta``: a float timestamp has too few digits to
    floor an instant a microsecond before a whole second correctly.
    """
    if moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()}: a billing time must be timezone-aware")
    return (moment - EPOCH) // _SECOND


def _at(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Interval:
    """A run of billed time (start, end], both whole UTC seconds; ``end`` is None while
    the replica still holds its resources (billed up to ``now`` by whoever asks)."""

    start: datetime
    end: datetime | None = None

    def seconds_until(self, now: datetime) -> int:
        """Its billed seconds, counting an open interval up to ``now``."""
        end = tick(now) if self.end is None else min(tick(self.end), tick(now))
        return max(0, end - tick(self.start))


def billable_intervals(events: Sequence[ReplicaEvent]) -> tuple[Interval, ...]:
    """One replica's billed intervals, from its recorded events, oldest first.

    ``started`` opens an interval unless one is open (a repeated ``started`` is the
    same placement); ``failed`` and ``stopped`` close the open one. Both ends are taken
    to the whole second below; an interval that rounds to nothing is dropped. Events
    out of order or of two replicas are an error: a bill must not rest on a guess.
    """
    intervals: list[Interval] = []
    opened: int | None = None
    previous: ReplicaEvent | None = None
    for event in events:
        if previous is not None:
            if event.replica_id != previous.replica_id:
                raise ValueError(
                    f"events of replicas {previous.replica_id} and {event.replica_id} mixed"
                )
            if event.at < previous.at:
                raise ValueError(
                    f"replica {event.replica_id}: event {event.kind} at {event.at.isoformat()}"
                    f" is before {previous.kind} at {previous.at.isoformat()}"
                )
        previous = event
        if event.kind in _OPENS and opened is None:
            opened = tick(event.at)
        elif event.kind in _CLOSES and opened is not None:
            closed = tick(event.at)
            if closed > opened:
                intervals.append(Interval(_at(opened), _at(closed)))
            opened = None
    if opened is not None:
        intervals.append(Interval(_at(opened)))
    return tuple(intervals)


def billed_seconds(intervals: Iterable[Interval], now: datetime) -> int:
    """All the seconds the intervals bill up to ``now``: what checkpoints add up to."""
    return sum(interval.seconds_until(now) for interval in intervals)


@dataclass(frozen=True)
class UsageRecord:
    """Seconds one replica was billed for over (start, end], within one UTC day.

    ``day`` is the day of the seconds billed: the one starting at ``start``, so a
    record that ends exactly at midnight belongs to the day before it.
    """

    replica_id: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return tick(self.end) - tick(self.start)

    @property
    def day(self) -> date:
        return self.start.astimezone(UTC).date()


@dataclass(frozen=True)
class Checkpoint:
    """What one checkpoint closes: the new records and the ``billed_until`` to store
    with them, in the same transaction."""

    records: tuple[UsageRecord, ...]
    billed_until: datetime | None


def checkpoint(
    replica_id: str,
    intervals: Iterable[Interval],
    billed_until: datetime | None,
    now: datetime,
) -> Checkpoint:
    """The usage of one replica in (billed_until, now], cut at every UTC midnight.

    ``billed_until`` is what the last stored checkpoint returned (None: never billed).
    A ``now`` at or before it closes nothing and leaves it as it is, so a clock that
    steps back never bills backwards, and a checkpoint run twice bills once.
    """
    until = tick(now)
    since = None if billed_until is None else tick(billed_until)
    if since is not None and until <= since:
        return Checkpoint((), billed_until)
    records: list[UsageRecord] = []
    for interval in intervals:
        start = tick(interval.start)
        if since is not None:
            start = max(start, since)
        end = until if interval.end is None else min(tick(interval.end), until)
        while start < end:
            # The next midnight after ``start`` (a record may start at one).
            piece_end = min(end, (start // _DAY_S + 1) * _DAY_S)
            records.append(UsageRecord(replica_id, _at(start), _at(piece_end)))
            start = piece_end
    return Checkpoint(tuple(records), _at(until))
