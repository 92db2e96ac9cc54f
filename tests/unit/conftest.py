"""Unit-test fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """moorage runs on asyncio (uvicorn), so its async code is tested there only."""
    return "asyncio"
