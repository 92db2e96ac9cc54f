"""Leader election among ``moorage controller`` processes: only the leader runs the loops.

Each controller looks at the lease every ``renew_s``; the one that takes it starts a
*term* (the reconciler, metering, the autoscaler, budgets) on a ``FencedDatabase`` of
its epoch, and renews the lease while the term runs. A term ends, with its loops
stopped at once and every replica left running (the next leader adopts them), when:

- a transaction of the term found another epoch (``Deposed``: it was taken over),
- a renewal said the lease is someone else's now, or
- no renewal answered before the lease may have expired (``models/leases.py``).

Then the controller stands by again. Stopped cleanly, it ends its term as a leader
(a last usage checkpoint) and releases the lease, so a standby takes over at once.
One line is logged per change of role, none per renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from moorage.errors import ErrorCode, MoorageError
from moorage.models.leases import (
    LeaseTerms,
    Lost,
    Take,
    Wait,
    still_leading,
    valid_until,
)
from moorage.store import leases
from moorage.store.db import Database
from moorage.store.leases import Deposed, FencedDatabase

log = logging.getLogger("moorage.controller")


class Term(Protocol):
    """The loops a leader runs, on the fenced store it was given."""

    async def start(self) -> None:
        """Starts the loops (the reconciler's first pass included)."""

    async def finish(self) -> None:
        """Ends the loops as a leader stopping cleanly (still fenced)."""

    async def abandon(self) -> None:
        """Ends the loops at once; stops no replica."""


class Election:
    def __init__(
        self,
        db: Database,
        me: str,
        terms: LeaseTerms,
        make_term: Callable[[FencedDatabase], Term],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.me = me
        self.terms = terms
        self.make_term = make_term
        self.monotonic = monotonic
        self.epoch: int | None = None  # while leading
        self._seen_leader: str | None = None
        self._store_down = False

    @property
    def leading(self) -> bool:
        return self.epoch is not None

    async def run(self, stopping: asyncio.Event) -> None:
        """Stands by and leads in turn until ``stopping`` is set."""
        while not stopping.is_set():
            asked_at = self.monotonic()
            decision = await self._try_take()
            if isinstance(decision, Take):
                self._seen_leader = None
                await self._lead(decision.epoch, valid_until(asked_at, self.terms), stopping)
                continue
            if decision is not None and decision.holder != self._seen_leader:
                self._seen_leader = decision.holder
                log.info(
                    "controller %s is standing by: %s leads", self.me, decision.holder or "nobody"
                )
            await _wait_any(self.terms.renew_s, stopping)

    async def _try_take(self) -> Take | Wait | None:
        try:
            decision = await asyncio.to_thread(leases.try_take, self.db, self.me, self.terms)
        except Exception as exc:  # the store is away: look again, say so once
            if not self._store_down:
                log.warning("controller %s cannot read the lease: %s", self.me, _one_line(exc))
            self._store_down = True
            return None
        if self._store_down:
            log.info("controller %s reaches the store again", self.me)
        self._store_down = False
        return decision

    async def _lead(self, epoch: int, until: float, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        deposed = asyncio.Event()

        def found_deposed() -> None:
            loop.call_soon_threadsafe(deposed.set)

        self.epoch = epoch
        log.info("controller %s is the leader (epoch %d)", self.me, epoch)
        term = self.make_term(FencedDatabase(self.db, epoch, found_deposed))
        starting = asyncio.create_task(term.start(), name="moorage-term-start")
        reason: str | None = None
        while reason is None and not stopping.is_set():
            left = until - self.monotonic()
            await _wait_any(min(self.terms.renew_s, max(left, 0.0)), stopping, deposed)
            if stopping.is_set():
                break
            if deposed.is_set() or (starting.done() and _deposed_in(starting)):
                reason = "a write found the lease at another epoch (taken over)"
            elif not still_leading(until, self.monotonic()):
                reason = f"no renewal answered within its {self.terms.lease_s:g} s lease"
            else:
                reason, until = await self._renew(epoch, until)
        if reason is None:
            await self._step_down_cleanly(epoch, term, starting)
        else:
            await _end(starting)
            await _quietly(term.abandon())
            log.warning(
                "controller %s lost the lease: %s; its loops stopped, its replicas keep "
                "running; standing by",
                self.me,
                reason,
            )
        self.epoch = None

    async def _renew(self, epoch: int, until: float) -> tuple[str | None, float]:
        """Renews the lease; answers why it is lost (None: still leading) and until when
        it is surely held."""
        asked_at = self.monotonic()
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(leases.renew, self.db, self.me, epoch, self.terms),
                timeout=max(until - asked_at, 0.001),
            )
        except TimeoutError:
            return f"no renewal answered within its {self.terms.lease_s:g} s lease", until
        except Exception:  # the store is away: the deadline decides
            return None, until
        if isinstance(result, Lost):
            return result.reason, until
        return None, valid_until(asked_at, self.terms)

    async def _step_down_cleanly(
        self, epoch: int, term: Term, starting: asyncio.Task[None]
    ) -> None:
        await _end(starting)
        await _quietly(term.finish())
        try:
            released = await asyncio.to_thread(leases.release, self.db, self.me, epoch)
        except Exception as exc:
            log.warning(
                "controller %s could not release the lease (%s); it ends in %g s",
                self.me,
                _one_line(exc),
                self.terms.lease_s,
            )
            return
        if released:
            log.info(
                "controller %s released the lease (epoch %d); its replicas keep running",
                self.me,
                epoch,
            )


async def _wait_any(timeout_s: float, *events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _deposed_in(task: asyncio.Task[None]) -> bool:
    return not task.cancelled() and isinstance(task.exception(), Deposed)


async def _end(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Deposed, Exception):
        await task


async def _quietly(ending: object) -> None:
    """Awaits a term's ending; a refused write (Deposed) or a failure is its last act."""
    assert asyncio.iscoroutine(ending)
    try:
        await ending
    except Deposed:
        pass
    except Exception:
        log.exception("ending the controller's loops failed")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


class ServeLease:
    """The lease as ``moorage serve`` holds it: serve runs its controller beside its API,
    so no ``moorage controller`` may lead the same store meanwhile. Taken at the start
    (a store another controller leads is refused), renewed while serve runs, released
    when it stops. Its holder names the host and MOORAGE_HOME, so a serve restarted
    after a crash takes its own lease again at once."""

    def __init__(
        self,
        db: Database,
        me: str,
        terms: LeaseTerms,
        on_lost: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self.me = me
        self.terms = terms
        # Called once when another controller took the lease (serve was paused past
        # it): serve must stop acting as a controller at once.
        self.on_lost = on_lost
        self.epoch: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def take(self) -> None:
        decision = await asyncio.to_thread(leases.try_take, self.db, self.me, self.terms)
        if isinstance(decision, Wait):
            raise MoorageError(
                f"controller {decision.holder or 'another'} leads this store; stop it, or run "
                "`moorage api` and `moorage gateway` beside it instead of `moorage serve` "
                "(docs/deploy.md)",
                code=ErrorCode.INVALID_FIELD,
            )
        self.epoch = decision.epoch
        self._task = asyncio.create_task(self._renew(), name="moorage-serve-lease")

    async def _renew(self) -> None:
        assert self.epoch is not None
        said = False
        while True:
            await asyncio.sleep(self.terms.renew_s)
            try:
                result = await asyncio.to_thread(
                    leases.renew, self.db, self.me, self.epoch, self.terms
                )
            except Exception:  # the store is away: the next try says it again
                continue
            if isinstance(result, Lost) and not said:
                said = True
                log.error("moorage serve lost the controller lease: %s", result.reason)
                if self.on_lost is not None:
                    await self.on_lost(result.reason)
                return

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.epoch is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(leases.release, self.db, self.me, self.epoch)
