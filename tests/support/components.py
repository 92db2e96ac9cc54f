"""Real components tests need, and what happens when one is missing.

A test that needs PostgreSQL (or any other real component) calls
``need("postgres", why)``: where the component is missing it skips with the
reason, unless ``MOORAGE_TEST_REQUIRE`` names it (as CI does), where it fails.
"""

from __future__ import annotations

import os

import pytest


def required() -> set[str]:
    return {n.strip() for n in os.environ.get("MOORAGE_TEST_REQUIRE", "").split(",") if n.strip()}


def need(component: str, reason: str) -> None:
    """Skips (or fails, when required) a test whose component is unavailable."""
    message = f"{component} unavailable: {reason}"
    if component in required():
        pytest.fail(message + f" (MOORAGE_TEST_REQUIRE asks for {component})")
    pytest.skip(message)
