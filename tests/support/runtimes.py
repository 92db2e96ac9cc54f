"""Checks shared by the tests of every runtime."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from moorage.runtimes.base import Observed, Runtime


async def refuses(address: str) -> bool:
    """Nothing listens at ``address`` any more."""
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
        try:
            await client.get(f"http://{address}/")
        except httpx.TransportError:
            return True
    return False


async def observe_until(
    runtime: Runtime,
    replica_id: str,
    done: Callable[[Observed | None], bool],
    what: str,
    *,
    timeout_s: float,
    interval_s: float = 0.05,
) -> Observed | None:
    """Polls ``observe()`` until ``done`` holds for the replica; fails after the timeout."""
    deadline = time.monotonic() + timeout_s
    seen: Observed | None = None
    while time.monotonic() < deadline:
        seen = (await runtime.observe()).get(replica_id)
        if done(seen):
            return seen
        await asyncio.sleep(interval_s)
    raise AssertionError(f"replica {replica_id} never {what}; last observed: {seen}")
