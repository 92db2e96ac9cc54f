"""Counts in messages, with the noun that agrees: "1 replica", "2 replicas", "1 time".

Messages a person reads (``status_info``, errors, the log) say how many of something
there are; "1 replicas" or "time(s)" reads as a careless machine. One place makes the
noun agree, so every message gets it right the same way.
"""

from __future__ import annotations


def count(number: int, noun: str, plural: str | None = None) -> str:
    """``number`` and ``noun``, made plural unless the number is 1 ("3 replicas");
    ``plural`` for a noun that does not take an "s"."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
