"""``Cached``: what keeps /metrics scrapes from reading the store each time."""

from __future__ import annotations

import pytest

from moorage.services.cached import Cached


def test_a_value_is_read_at_most_once_every_max_age_and_kept_when_a_read_fails() -> None:
    now = [0.0]
    answers: list[int | Exception] = [1, RuntimeError("store away"), 3]
    reads: list[float] = []

    def read() -> int:
        reads.append(now[0])
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    cached = Cached(read, 0, max_age_s=5.0, monotonic=lambda: now[0])
    assert cached.current() == 1
    now[0] = 4.9
    assert cached.current() == 1, "not read again before max_age_s"
    now[0] = 5.0
    with pytest.raises(RuntimeError):
        cached.current()
    now[0] = 6.0
    assert cached.current() == 1, "a failed read leaves the last value, not retried at once"
    now[0] = 10.0
    assert cached.current() == 3
    assert reads == [0.0, 5.0, 10.0]
