"""Stopping what runs past a spending limit: every MOORAGE_BUDGET_INTERVAL_S, each user
with a budget is checked against their spend up to now (the injected clock), and
every running endpoint of a user whose limit in its currency is reached is stopped.

A stop here is a user's stop with a reason: the endpoint's desired state becomes
``stopped`` (so the controller stops its replicas on its next pass and their billing
closes), ``stop_reason`` says which limit, an endpoint event records it and one INFO
line logs it. Nothing is deleted, and the endpoint stays stopped until its user
starts it (a start is refused while the limit is still reached).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime

from moorage import lifecycle
from moorage.clock import Clock
from moorage.controller.tasks import cancel_all
from moorage.models.budgets import BudgetState, BudgetStatus
from moorage.models.endpoints import DesiredState, Endpoint
from moorage.models.events import EndpointChange, changes
from moorage.store.accounts import AccountRepository
from moorage.store.budgets import BudgetRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.events import EventRepository

log = logging.getLogger(__name__)


Seen = Callable[[str, BudgetStatus], None]


def enforce_budgets(
    db: Database, now: datetime, seen: Seen = lambda _user_id, _status: None
) -> list[tuple[Endpoint, EndpointChange]]:
    """Stops every running endpoint whose owner's limit in its currency is reached at
    ``now``; answers what it stopped, with the change recorded for each. ``seen`` is
    told every budget's status, stopping or not."""
    with db.session() as session:
        users = sorted(BudgetRepository(session).by_user())
    stopped: list[tuple[Endpoint, EndpointChange]] = []
    for user_id in users:  # one transaction per user: one user's failure is theirs alone
        try:
            stopped.extend(_enforce_user(db, user_id, now, seen))
        except Exception:
            log.exception("checking the spending limits of user %s failed; retrying", user_id)
    return stopped


def _enforce_user(
    db: Database, user_id: str, now: datetime, seen: Seen
) -> list[tuple[Endpoint, EndpointChange]]:
    stopped: list[tuple[Endpoint, EndpointChange]] = []
    with db.checked_session() as session:
        # Takes turns with the user's own writes (a start checks the same limit).
        AccountRepository(session).lock_user(user_id)
        budgets = BudgetRepository(session)
        for status in budgets.statuses(user_id, now):
            seen(user_id, status)
            if status.state is not BudgetState.EXCEEDED:
                continue
            for endpoint in budgets.running_endpoints(user_id, status.budget.currency):
                after = dataclasses.replace(
                    endpoint,
                    desired_state=DesiredState.STOPPED,
                    stop_reason=status.message,
                    updated_at=now,
                )
                EndpointRepository(session).save(after)
                for change in changes(endpoint, after, now):
                    EventRepository(session).record(change)
                    stopped.append((after, change))
    return stopped


class BudgetEnforcer:
    """The loop around :func:`enforce_budgets`; ``on_stop`` wakes the controller so the
    replicas stop now rather than on its next pass."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        interval_s: float,
        on_stop: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.interval_s = interval_s
        self.on_stop = on_stop
        self._task: asyncio.Task[None] | None = None
        # Each budget's state at the last check, to log a line when it changes (the
        # first check after a start logs those not ok).
        self._states: dict[tuple[str, str], BudgetState] = {}

    def _seen(self, user_id: str, status: BudgetStatus) -> None:
        key = (user_id, status.budget.currency)
        before = self._states.get(key, BudgetState.OK)
        self._states[key] = status.state
        if status.state is before:
            return
        if status.message is None:
            log.info(
                "user %s: spending in %s is under its warning again (%s spent)",
                user_id,
                status.budget.currency,
                status.spent,
            )
        else:
            log.info("user %s: %s", user_id, status.message)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="moorage-budgets")

    async def enforce(self) -> list[tuple[Endpoint, EndpointChange]]:
        """One check of every budget at the clock's now (store work, in a thread)."""
        stopped = await asyncio.to_thread(enforce_budgets, self.db, self.clock.now(), self._seen)
        for endpoint, change in stopped:
            lifecycle.endpoint(change, endpoint.name)
        if stopped:
            self.on_stop()
        return stopped

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.enforce()
            except Exception:  # the next check finds the same limits
                log.exception("spending limit check failed; retrying")

    async def shutdown(self) -> None:
        if self._task is not None:
            await cancel_all([self._task])
            self._task = None
