"""Replica logs for the API: the owner's replicas only, merged line by line.

Bounded so no tenant can abuse them: ``tail`` is at most ``MAX_TAIL`` lines, a
response's backlog (what exists before following starts) at most
``response_max_bytes``, and each user may hold at most ``follower_limit(user_id)``
followers at once, across all their endpoints; a follower's slot is freed when its
client leaves. A follower is also re-checked every ``recheck_s`` (``still_allowed``):
one whose token was revoked, or whose endpoint was deleted, ends with a last line
saying why, instead of reading on for as long as the connection lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Sequence

from moorage.errors import ErrorCode, InvalidField, MoorageError, TooManyRequests
from moorage.models.accounts import User
from moorage.models.words import count
from moorage.runtimes.base import Runtime
from moorage.runtimes.logfiles import Housekeeper
from moorage.services.endpoints import EndpointService

MAX_TAIL = 100_000
DEFAULT_RESPONSE_MAX_BYTES = 16 * 1024 * 1024
# A replica that prints without newlines is cut into lines this long, so memory stays
# bounded per follower.
MAX_LINE_BYTES = 64 * 1024
# How often a follower's caller is checked again: as long as a token is remembered
# without the store (``AccountService.recently_authenticated``).
FOLLOW_RECHECK_S = 5.0


class TooManyFollowers(TooManyRequests):
    """429: the user already holds as many log followers as their quota allows."""

    code = ErrorCode.QUOTA_EXCEEDED


class _Followers:
    """How many followers each user holds now. Thread-safe: a slot may be released
    by the garbage collector's finalizer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    def acquire(self, user_id: str, limit: int) -> Callable[[], None]:
        """Takes a slot or raises TooManyFollowers; returns an idempotent release."""
        with self._lock:
            held = self._held.get(user_id, 0)
            if held >= limit:
                raise TooManyFollowers(
                    f"log_followers: you already have {count(held, 'log follower')} open, the "
                    f"most your quota allows ({limit}); close a follower (a client that "
                    "disconnects frees its slot) or ask the operator to raise the quota"
                )
            self._held[user_id] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                left = self._held.get(user_id, 1) - 1
                if left > 0:
                    self._held[user_id] = left
                else:
                    self._held.pop(user_id, None)

        return release

    def held(self, user_id: str) -> int:
        with self._lock:
            return self._held.get(user_id, 0)


class LogService:
    def __init__(
        self,
        endpoints: EndpointService,
        runtime: Runtime,
        *,
        follower_limit: Callable[[str], int] = lambda _user_id: 4,
        response_max_bytes: int = DEFAULT_RESPONSE_MAX_BYTES,
        housekeeper: Housekeeper | None = None,
        recheck_s: float = FOLLOW_RECHECK_S,
    ) -> None:
        self.endpoints = endpoints
        self.recheck_s = recheck_s
        self.runtime = runtime
        self.follower_limit = follower_limit
        self.response_max_bytes = response_max_bytes
        self.housekeeper = housekeeper
        self.followers = _Followers()
        self._housekeeping: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts the periodic rotation and clean-up of replica log folders."""
        if self.housekeeper is not None and self._housekeeping is None:
            self._housekeeping = asyncio.create_task(self.housekeeper.run())

    async def close(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None

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
        self,
        replica_ids: Sequence[str],
        *,
        tail: int | None,
        follow: bool,
        user: User | None = None,
        still_allowed: Callable[[], None] | None = None,
    ) -> AsyncIterator[bytes]:
        """Whole lines from every replica, each prefixed with its replica id when there
        are several, interleaved as they arrive. Checks arguments, and takes one of the
        user's follower slots, before streaming. While following, ``still_allowed`` is
        called (in a worker thread) every ``recheck_s``; the MoorageError it raises
        ends the stream, its message the last line."""
        if tail is not None and not 0 <= tail <= MAX_TAIL:
            raise InvalidField("tail", f"must be between 0 and {MAX_TAIL}, got {tail}")
        release: Callable[[], None] | None = None
        if follow and user is not None and not user.is_admin:  # the operator is trusted
            release = self.followers.acquire(user.user_id, self.follower_limit(user.user_id))
        lines = self._merged(
            replica_ids,
            tail=tail,
            follow=follow,
            release=release,
            still_allowed=still_allowed if follow else None,
        )
        if release is not None:
            # Also freed if the stream is dropped without ever being iterated.
            weakref.finalize(lines, release)
        return lines

    async def _merged(
        self,
        replica_ids: Sequence[str],
        *,
        tail: int | None,
        follow: bool,
        release: Callable[[], None] | None,
        still_allowed: Callable[[], None] | None = None,
    ) -> AsyncIterator[bytes]:
        prefix = len(replica_ids) > 1
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=256)
        budget = self.response_max_bytes

        async def pump(replica_id: str) -> None:
            label = f"[{replica_id[:8]}] ".encode() if prefix else b""
            pending = b""
            stream = self.runtime.logs(replica_id, tail=tail, follow=follow)
            try:
                async for chunk in stream:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        await queue.put(label + line + b"\n")
                    if len(pending) > MAX_LINE_BYTES:  # no newline for that long: cut it
                        await queue.put(label + pending + b"\n")
                        pending = b""
                if pending:
                    await queue.put(label + pending + b"\n")
            finally:
                with contextlib.suppress(Exception):
                    await stream.aclose()  # type: ignore[attr-defined]

        async def run_all() -> None:
            try:
                await asyncio.gather(*(pump(r) for r in replica_ids))
            finally:
                await queue.put(None)

        producer = asyncio.create_task(run_all())
        loop = asyncio.get_running_loop()
        recheck_at = loop.time() + self.recheck_s
        try:
            while True:
                if still_allowed is not None and loop.time() >= recheck_at:
                    try:
                        await asyncio.to_thread(still_allowed)
                    except MoorageError as exc:
                        yield f"[moorage] stopped following: {exc.message}\n".encode()
                        return
                    recheck_at = loop.time() + self.recheck_s
                try:
                    async with asyncio.timeout_at(recheck_at if still_allowed else None):
                        line = await queue.get()
                except TimeoutError:
                    continue
                if line is None:
                    break
                if not follow:
                    budget -= len(line)
                    if budget < 0:
                        yield (
                            f"[moorage] output cut at {self.response_max_bytes} bytes "
                            "(MOORAGE_LOG_RESPONSE_MAX_BYTES); ask for fewer lines with "
                            "tail\n"
                        ).encode()
                        return
                yield line
        finally:
            if release is not None:
                release()
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
