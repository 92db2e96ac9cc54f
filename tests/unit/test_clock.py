"""The fake clock decision tests drive, and the real one it stands in for."""

from __future__ import annotations

from datetime import UTC, timedelta

from moorage.clock import FakeClock, SystemClock
from tests.unit.builders import T0


def test_fake_clock_stands_still_until_advanced(fake_clock: FakeClock) -> None:
    first = fake_clock.now()

    assert fake_clock.now() == first
    assert first == T0


def test_fake_clock_advances_by_exactly_the_seconds_asked(fake_clock: FakeClock) -> None:
    start = fake_clock.now()

    fake_clock.advance(1.5)
    fake_clock.advance(0.25)

    assert fake_clock.now() - start == timedelta(seconds=1.75)


def test_both_clocks_give_timezone_aware_utc(fake_clock: FakeClock) -> None:
    assert fake_clock.now().tzinfo is UTC
    assert SystemClock().now().utcoffset() == timedelta(0)
