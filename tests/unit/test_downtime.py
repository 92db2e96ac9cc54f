"""Where billing closes for a replica the restarted controller found gone: moorage's
last heartbeat, never before the replica's own last event or what a checkpoint
already closed, and the moment it is seen when there is no heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from moorage.models.downtime import failed_while_down_at

STARTED = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)
HEARTBEAT = STARTED + timedelta(minutes=30)
NOW = HEARTBEAT + timedelta(minutes=15)  # moorage was down for 15 minutes


def test_closed_at_the_last_heartbeat_not_at_the_restart() -> None:
    assert failed_while_down_at(HEARTBEAT, STARTED, STARTED + timedelta(minutes=29), NOW) == (
        HEARTBEAT
    )


def test_without_a_heartbeat_it_is_closed_when_seen() -> None:
    assert failed_while_down_at(None, STARTED, STARTED + timedelta(minutes=29), NOW) == NOW


def test_never_before_its_own_last_event() -> None:
    adopted = HEARTBEAT + timedelta(seconds=5)  # an event after the heartbeat
    assert failed_while_down_at(HEARTBEAT, adopted, None, NOW) == adopted


def test_never_before_what_a_checkpoint_closed() -> None:
    checkpoint = HEARTBEAT + timedelta(seconds=0.4)  # checkpointed, then moorage died
    assert failed_while_down_at(HEARTBEAT, STARTED, checkpoint, NOW) == checkpoint


def test_a_heartbeat_ahead_of_the_clock_counts_as_now() -> None:
    assert failed_while_down_at(NOW + timedelta(hours=1), STARTED, None, NOW) == NOW
