"""A real process runtime with its bubblewrap sandbox on a short MOORAGE_HOME (a Unix
socket path holds 107 bytes), for tests that start sandboxed replicas directly."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from moorage.runtimes.process import ProcessRuntime
from moorage.runtimes.sandbox import Sandbox
from moorage.settings import Settings
from tests.support.components import need


@asynccontextmanager
async def sandboxed_runtime(
    prepare: Callable[[Path], dict[str, Any]] = lambda _home: {},
) -> AsyncIterator[tuple[ProcessRuntime, Path]]:
    """``(runtime, MOORAGE_HOME)``; ``prepare(home)`` makes what the test needs there
    and answers more arguments for the runtime. Every replica is stopped and the
    folder removed afterwards, whatever the test did."""
    home = Path(tempfile.mkdtemp(prefix="mrg-", dir="/tmp"))
    try:
        settings = Settings(home=home, sandbox_path=f"{Path(sys.executable).parent}:/usr/bin:/bin")
        settings.replicas_dir.mkdir()
        sandbox = await asyncio.to_thread(Sandbox.from_settings, settings)
        if sandbox.config is None:
            need("bubblewrap", sandbox.problem or "no sandbox")
        runtime = ProcessRuntime(
            settings.replicas_dir,
            sandbox=sandbox,
            owner_uids=lambda _user: settings.sandbox_uid_base,
            **prepare(home),
        )
        try:
            yield runtime, home
        finally:
            for replica in settings.replicas_dir.iterdir():
                await runtime.stop(replica.name)
            await runtime.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
