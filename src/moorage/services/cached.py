"""A value read from the store at most once every ``max_age_s``: what keeps frequent
``/metrics`` scrapes from costing the store a read each."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Cached"]

T = TypeVar("T")


class Cached(Generic[T]):
    """``read()``'s answer, read again once it is ``max_age_s`` old. Scrapes run in
    worker threads, so one read runs at a time; a read that fails is tried again only
    after ``max_age_s`` too, so a store that is away is not hammered."""

    def __init__(
        self,
        read: Callable[[], T],
        initial: T,
        *,
        max_age_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.max_age_s = max_age_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._value = initial  # what a read that failed leaves showing
        self._read_at: float | None = None

    @property
    def current_value(self) -> T:
        """The value as last read, without reading (for a read that builds on it)."""
        return self._value

    def current(self) -> T:
        with self._lock:
            now = self._monotonic()
            if self._read_at is None or now - self._read_at >= self.max_age_s:
                self._read_at = now
                self._value = self._read()
            return self._value
