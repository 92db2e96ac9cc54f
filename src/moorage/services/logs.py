"""Replica logs for the API: the owner's replicas only, merged line by line."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from moorage.errors import InvalidField
from moorage.runtimes.base import Runtime
from moorage.services.endpoints import EndpointService
from moorage.store.accounts import User

MAX_TAIL = 100_000


class LogService:
    def __init__(self, endpoints: EndpointService, runtime: Runtime) -> None:
        self.endpoints = endpoints
        self.runtime = runtime

    def replicas(self, user: User, service_id: str, replica: str | None) -> Sequence[str]:
        """The replica ids to read, checking ownership first (another user's is 404)."""
        view = self.endpoints.get(user, service_id)
        ids = [r.replica_id for r in view.replicas]
        if replica is None:
            return ids
        matches = [i for i in ids if i.startswith(replica)] if replica else []
        if len(matches) != 1:
            raise InvalidField(
                "replica",
                f"{replica!r} names {'no' if not matches else 'more than one'} live replica of "
                f"this endpoint; its replicas are {', '.join(ids) or 'none'}",
            )
        return matches

    def stream(
        self, replica_ids: Sequence[str], *, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        """Whole lines from every replica, each prefixed with its replica id when there
        are several, interleaved as they arrive. Checks arguments before streaming."""
        if tail is not None and not 0 <= tail <= MAX_TAIL:
            raise InvalidField("tail", f"must be between 0 and {MAX_TAIL}, got {tail}")
        return self._merged(replica_ids, tail=tail, follow=follow)

    async def _merged(
        self, replica_ids: Sequence[str], *, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        prefix = len(replica_ids) > 1
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=256)

        async def pump(replica_id: str) -> None:
            label = f"[{replica_id[:8]}] ".encode() if prefix else b""
            pending = b""
            async for chunk in self.runtime.logs(replica_id, tail=tail, follow=follow):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    await queue.put(label + line + b"\n")
            if pending:
                await queue.put(label + pending + b"\n")

        async def run_all() -> None:
            try:
                await asyncio.gather(*(pump(r) for r in replica_ids))
            finally:
                await queue.put(None)

        producer = asyncio.create_task(run_all())
        try:
            while (line := await queue.get()) is not None:
                yield line
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
