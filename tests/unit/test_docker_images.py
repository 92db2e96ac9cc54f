"""Image references as the docker runtime asks the engine to pull them."""

from __future__ import annotations

import pytest

from moorage.runtimes.docker_images import pull_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("python:3.10-slim", ("python", "3.10-slim")),
        ("python", ("python", "latest")),
        (f"python@{DIGEST}", ("python", DIGEST)),
        (f"registry.example:5000/team/app@{DIGEST}", ("registry.example:5000/team/app", DIGEST)),
        ("registry.example:5000/team/app", ("registry.example:5000/team/app", "latest")),
        ("registry.example:5000/team/app:v2", ("registry.example:5000/team/app", "v2")),
    ],
)
def test_a_reference_is_pulled_by_its_tag_or_digest(image: str, expected: tuple[str, str]) -> None:
    assert pull_reference(image) == expected
