"""Whatever replicas do and whenever checkpoints run, crash or repeat, every billed second
is billed exactly once.

Random event logs for several replicas over five minutes across a day and a month
end; random checkpoints, some lost in a crash before they are stored, some run twice.
The seconds in the stored records are compared with an oracle that walks the clock
tick by tick over the raw events, sharing no code with the metering it checks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.models.metering import UsageRecord, billable_intervals, checkpoint, tick
from moorage.models.replicas import ReplicaEvent, ReplicaEventKind

K = ReplicaEventKind
# Two minutes before midnight at the end of January.
BASE = datetime(2026, 1, 31, 23, 58, tzinfo=UTC)
SPAN_US = 300 * 1_000_000
END = BASE + timedelta(microseconds=SPAN_US, seconds=10)

event_steps = st.lists(st.tuples(st.sampled_from(list(K)), st.integers(0, SPAN_US)), max_size=14)
# Each checkpoint is stored, lost in a crash before it was stored, or run twice.
checkpoint_steps = st.lists(
    st.tuples(st.integers(0, SPAN_US), st.sampled_from(["stored", "crashed", "twice"])),
    max_size=12,
)


def make_log(replica_id: str, steps: Sequence[tuple[ReplicaEventKind, int]]) -> list[ReplicaEvent]:
    ordered = sorted(steps, key=lambda step: step[1])
    return [
        ReplicaEvent(replica_id, "ep-1", kind, BASE + timedelta(microseconds=offset))
        for kind, offset in ordered
    ]


def open_after(events: Sequence[ReplicaEvent]) -> bool:
    """Whether the replica holds its resources after these events."""
    holding = False
    for event in events:
        if event.kind is K.STARTED:
            holding = True
        elif event.kind in (K.FAILED, K.STOPPED):
            holding = False
    return holding


def oracle_ticks(events: Sequence[ReplicaEvent]) -> set[int]:
    """Tick T bills the second before it when the replica held its resources after every
    event of an earlier second."""
    return {
        t
        for t in range(tick(BASE), tick(END) + 1)
        if open_after([e for e in events if tick(e.at) < t])
    }


def exact_lives(events: Sequence[ReplicaEvent]) -> tuple[int, int]:
    """Microseconds the replica held its resources, unrounded, and how many lives."""
    held_us, lives, since = 0, 0, None
    for event in [*events, ReplicaEvent("", "", K.STOPPED, END)]:
        if event.kind is K.STARTED and since is None:
            since = event.at
        elif event.kind in (K.FAILED, K.STOPPED) and since is not None:
            held_us += (event.at - since) // timedelta(microseconds=1)
            lives += 1
            since = None
    return held_us, lives


def stored_records(
    replica_id: str,
    events: Sequence[ReplicaEvent],
    checkpoints: Sequence[tuple[int, str]],
) -> list[UsageRecord]:
    stored: list[UsageRecord] = []
    billed_until: datetime | None = None
    runs = [*sorted(checkpoints), (SPAN_US + 10 * 1_000_000, "stored")]
    for offset, fate in runs:
        now = BASE + timedelta(microseconds=offset)
        # What was recorded by then.
        intervals = billable_intervals([e for e in events if e.at <= now])
        for _ in range(2 if fate == "twice" else 1):
            closed = checkpoint(replica_id, intervals, billed_until, now)
            if fate != "crashed":
                stored.extend(closed.records)
                billed_until = closed.billed_until
    return stored


@settings(max_examples=300, deadline=None)
@given(
    replicas=st.lists(st.tuples(event_steps, checkpoint_steps), min_size=1, max_size=4),
)
def test_every_billed_second_is_billed_once_whatever_the_checkpoints(
    replicas: list[tuple[list[tuple[ReplicaEventKind, int]], list[tuple[int, str]]]],
) -> None:
    total_billed, total_expected = 0, 0
    for index, (steps, checkpoints) in enumerate(replicas):
        replica_id = f"r-{index}"
        events = make_log(replica_id, steps)

        records = stored_records(replica_id, events, checkpoints)

        ticks = Counter(
            t for record in records for t in range(tick(record.start) + 1, tick(record.end) + 1)
        )
        assert all(count == 1 for count in ticks.values()), "a second billed twice"
        assert set(ticks) == oracle_ticks(events)
        for record in records:
            assert tick(record.start) // 86_400 == (tick(record.end) - 1) // 86_400
            assert record.day == record.start.date()
        billed = sum(record.seconds for record in records)
        held_us, lives = exact_lives(events)
        # Rounding each end down is off by less than a second per life, never more.
        assert abs(billed * 1_000_000 - held_us) < max(lives, 1) * 1_000_000
        total_billed += billed
        total_expected += len(oracle_ticks(events))
    assert total_billed == total_expected
