"""Checks shared by the tests of every runtime."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

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


FOLLOW_WAIT_S = 20.0


@dataclass
class Follower:
    """Collects ``logs(follow=True)`` in a task, so a test can act while it runs."""

    chunks: list[bytes] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    async def wait_for(self, needle: str) -> None:
        deadline = time.monotonic() + FOLLOW_WAIT_S
        while needle not in self.text:
            assert self.task is not None
            if self.task.done():
                raise AssertionError(f"the stream ended without {needle!r}: {self.text!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never came; followed so far: {self.text!r}")
            await asyncio.sleep(0.05)

    async def ended(self) -> bool:
        """Whether the stream ends within FOLLOW_WAIT_S."""
        assert self.task is not None
        done, _ = await asyncio.wait({self.task}, timeout=FOLLOW_WAIT_S)
        return bool(done)


@asynccontextmanager
async def follow(runtime: Runtime, replica_id: str, *, tail: int | None) -> AsyncIterator[Follower]:
    """Follows a replica's logs for the block; the follower is cancelled after it."""
    follower = Follower()

    async def collect() -> None:
        async for chunk in runtime.logs(replica_id, tail=tail, follow=True):
            follower.chunks.append(chunk)

    follower.task = asyncio.create_task(collect())
    try:
        yield follower
    finally:
        if not follower.task.done():
            follower.task.cancel()
        await asyncio.gather(follower.task, return_exceptions=True)


async def request_until_answered(
    method: str,
    address: str,
    path: str = "/",
    *,
    content: str = "",
    timeout_s: float = FOLLOW_WAIT_S,
) -> httpx.Response:
    """A request to a replica at ``host:port``, retried until it answers; fails after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
        while time.monotonic() < deadline:
            try:
                response = await client.request(method, f"http://{address}{path}", content=content)
                response.raise_for_status()
                return response
            except httpx.TransportError as exc:
                last = exc
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing answered HTTP on {address} within {timeout_s} s: {last!r}")
