"""Counts in messages agree with their nouns: "1 replica", "2 replicas", never "(s)"."""

from __future__ import annotations

import pytest

from moorage.models.words import count


@pytest.mark.parametrize(
    ("number", "expected"),
    [(0, "0 replicas"), (1, "1 replica"), (2, "2 replicas"), (32, "32 replicas")],
)
def test_a_noun_is_plural_unless_there_is_one(number: int, expected: str) -> None:
    assert count(number, "replica") == expected


def test_a_noun_with_its_own_plural() -> None:
    assert count(1, "process", "processes") == "1 process"
    assert count(3, "process", "processes") == "3 processes"
