"""``runner.serve``: how ``moorage serve`` ends when the API's lifespan cannot start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from fastapi import FastAPI

from moorage import runner
from moorage.composition import MoorageServer
from moorage.errors import MoorageError

pytestmark = pytest.mark.anyio


async def test_a_start_that_fails_is_an_error_and_leaves_no_socket(tmp_path: Path) -> None:
    """uvicorn returns quietly when a lifespan fails; moorage must exit with an error."""

    @asynccontextmanager
    async def failing(_app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("the store went away")
        yield  # pragma: no cover

    socket_path = tmp_path / "run" / "api.sock"
    server = SimpleNamespace(
        settings=SimpleNamespace(api_socket=socket_path),
        api_socket=socket_path,
        api=FastAPI(lifespan=failing),
    )

    with pytest.raises(MoorageError, match="failed to start"):
        await runner.serve(cast(MoorageServer, server))
    assert not socket_path.exists()
