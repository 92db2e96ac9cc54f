"""The autoscaler: every ``interval_s`` (and at once when a request is held at zero),
each automatic endpoint's demand at the gateway is sampled and its policy
(``models/autoscaling.py``, pure) decides how many replicas it wants.

Demand is what the gateways see (``models/demand.py``): this process's, read
directly, plus what standalone gateways reported in the last few seconds:
requests in flight at the endpoint's replicas, requests waiting (held while a
replica starts, or queued behind ``max_concurrency``), and requests admitted per
second. A decision that changes the
count is written with a conditional update (only if the endpoint still runs
automatically at the count decided from, so a user's concurrent write wins), recorded
as a ``scaled`` event naming the metric, its value, the policy and why, logged as one
line, and the controller is woken to start or drain replicas.

State across restarts: the count lives in the store, and so does when it last
changed (``scaled_at``). A fresh autoscaler starts each endpoint's window empty and
its ``awake_since`` at now, so it scales nothing down until a whole window has been
seen: waking up is never a reason to scale down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from moorage import lifecycle
from moorage.clock import Clock
from moorage.controller.tasks import cancel_all
from moorage.models.autoscaling import (
    Decision,
    MetricWindow,
    Observation,
    Sample,
    ScaleMetric,
    ScalePolicy,
    ScaleState,
    decide,
)
from moorage.models.demand import REPORT_FRESH_FOR, Demand, EndpointDemand
from moorage.models.endpoints import Endpoint
from moorage.models.events import EndpointChange
from moorage.models.replicas import Replica
from moorage.models.states import EndpointEventKind, ReplicaState
from moorage.models.words import count
from moorage.store.db import Database
from moorage.store.demand import DemandRepository
from moorage.store.endpoints import EndpointRepository
from moorage.store.events import EventRepository
from moorage.store.replicas import ReplicaRepository

log = logging.getLogger(__name__)

_STARTING = (ReplicaState.REQUESTED, ReplicaState.STARTING)
# The shortest span a sample is measured over.
MIN_SAMPLE_SPAN_S = 0.25


DemandSource = Callable[[], Demand]


class _Tracker:
    """One endpoint's window and decision state, kept between looks."""

    def __init__(self, endpoint: Endpoint, policy: ScalePolicy, now: float) -> None:
        self.policy = policy
        self.window = MetricWindow(_span(policy))
        scaled_at = endpoint.scaled_at
        self.state = ScaleState(
            desired=endpoint.target_instance_number,
            last_change_at=_seconds(scaled_at) if scaled_at is not None else None,
            awake_since=now,
        )
        # The counters at the last sample, and when: a sample is their difference.
        self.last: tuple[EndpointDemand, float] | None = None
        self.held_seen: int | None = None

    def follow(self, endpoint: Endpoint, policy: ScalePolicy, now: float) -> None:
        """Picks up a changed policy or a count set by someone else (a PUT)."""
        if policy != self.policy:
            if _span(policy) != _span(self.policy):
                kept = self.window.samples()
                self.window = MetricWindow(_span(policy))
                for sample in kept:
                    self.window.add(sample)
            self.policy = policy
        if endpoint.target_instance_number != self.state.desired:
            self.state = ScaleState(
                desired=endpoint.target_instance_number,
                last_change_at=now,
                awake_since=self.state.awake_since,
            )

    def sample(self, seen: EndpointDemand, now: float, ready: int) -> float | None:
        """The policy's metric over the time since the last sample, from the gateways'
        counters: mean requests in flight (``concurrency``), plus mean waiting
        (``queue``), or admitted per second (``rps``). None for the first look (nothing
        to compare with) and for one woken within ``MIN_SAMPLE_SPAN_S`` of the last
        (one request over a few milliseconds would read as hundreds a second; it is
        counted at the next look). With no replica ready, requests held at the
        gateway are the concurrency the endpoint is about to carry, so a cold start
        is sized by them."""
        last = self.last
        if last is not None and now - last[1] < MIN_SAMPLE_SPAN_S:
            return None
        self.last = (seen, now)
        if last is None:
            return None
        before, then = last
        span = now - then
        busy = max(0.0, seen.busy_s - before.busy_s) / span
        waited = max(0.0, seen.waited_s - before.waited_s) / span
        match self.policy.metric:
            case ScaleMetric.CONCURRENCY:
                return busy + (waited if ready == 0 else 0.0)
            case ScaleMetric.QUEUE:
                return busy + waited
            case ScaleMetric.RPS:
                return max(0, seen.arrived - before.arrived) / span

    def newly_held(self, seen: EndpointDemand) -> int:
        """Requests held at zero since the last look, even those that gave up at once
        (``X-Moorage-Cold-Start-Timeout: 0``): each asks for a replica."""
        held, self.held_seen = self.held_seen, seen.held
        return 0 if held is None else max(0, seen.held - held)


def _span(policy: ScalePolicy) -> float:
    return max(policy.window_s, policy.panic_window_s, policy.scale_down_delay_s)


def _seconds(at: datetime) -> float:
    return at.replace(tzinfo=UTC).timestamp() if at.tzinfo is None else at.timestamp()


def observe(endpoint: Endpoint, replicas: Sequence[Replica], waiting: int) -> Observation:
    """Replicas of the endpoint's current revision ready and starting, and the
    requests waiting for one."""
    current = [r for r in replicas if r.revision == endpoint.revision and r.state.is_live]
    return Observation(
        ready=sum(1 for r in current if r.state is ReplicaState.READY),
        starting=sum(1 for r in current if r.state in _STARTING),
        waiting=waiting,
    )


def scaled_change(endpoint: Endpoint, decision: Decision, at: datetime) -> EndpointChange:
    """The event a decision records: when, from, to, why (the reason names the metric's
    value), and the policy that decided."""
    policy = endpoint.scale_policy
    assert policy is not None
    return EndpointChange(
        endpoint.service_id,
        EndpointEventKind.SCALED,
        at,
        endpoint.revision,
        f"autoscaled from {decision.previous} to {count(decision.desired, 'replica')}: "
        f"{decision.reason} (policy: {policy.metric.value}, target {policy.target:g} per "
        f"replica, {policy.min_instances} to {policy.max_instances} replicas)",
    )


class Autoscaler:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        demand: DemandSource,
        *,
        interval_s: float = 0.5,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.demand = demand
        self.interval_s = interval_s
        self.on_change = on_change
        self._trackers: dict[str, _Tracker] = {}
        # Endpoints whose last decision failed: said once, until one succeeds again.
        self._failing: set[str] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def wake(self, _service_id: str = "") -> None:
        """Asks for a look now (a request is held at zero); safe from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="moorage-autoscaler")

    async def shutdown(self) -> None:
        if self._task is not None:
            await cancel_all([self._task])
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.look()
            except Exception:  # the next look sees the same endpoints
                log.exception("autoscaling look failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()

    async def look(self) -> list[tuple[Endpoint, EndpointChange]]:
        """Samples every automatic endpoint once and applies the decisions that change
        a count; answers what it changed."""
        now = self.clock.now()
        endpoints, replicas, reported = await asyncio.to_thread(self._load, now)
        at = _seconds(now)
        demand = self.demand().plus(reported)
        decided: list[tuple[Endpoint, Decision]] = []
        seen: set[str] = set()
        for endpoint in endpoints:
            seen.add(endpoint.service_id)
            try:  # one endpoint's failure is its own: the others are still decided
                decision = self._decide(endpoint, demand, replicas, at)
            except Exception:
                if endpoint.service_id not in self._failing:  # once, not every look
                    log.exception("autoscaling endpoint %s failed", endpoint.service_id)
                self._failing.add(endpoint.service_id)
                continue
            self._failing.discard(endpoint.service_id)
            if decision is not None and decision.changed:
                decided.append((endpoint, decision))
        for gone in set(self._trackers) - seen:
            del self._trackers[gone]
        self._failing &= seen
        if not decided:
            return []
        applied = await asyncio.to_thread(self._apply, decided, now)
        for endpoint, change in applied:
            lifecycle.endpoint(change, endpoint.name)
        if applied:
            self.on_change()
        return applied

    def _decide(
        self,
        endpoint: Endpoint,
        demand: Demand,
        replicas: Mapping[str, Sequence[Replica]],
        at: float,
    ) -> Decision | None:
        policy = endpoint.scale_policy
        if policy is None:
            return None
        tracker = self._trackers.get(endpoint.service_id)
        if tracker is None:
            tracker = self._trackers[endpoint.service_id] = _Tracker(endpoint, policy, at)
        tracker.follow(endpoint, policy, at)
        seen = demand.of(endpoint.service_id)
        waiting = max(seen.waiting, tracker.newly_held(seen))
        observed = observe(endpoint, replicas.get(endpoint.service_id, ()), waiting)
        value = tracker.sample(seen, at, observed.ready)
        if value is not None:
            tracker.window.add(Sample(at, value))
        decision = decide(policy, tracker.window, observed, tracker.state, at)
        tracker.state = decision.state
        return decision

    def _load(
        self, now: datetime
    ) -> tuple[Sequence[Endpoint], dict[str, list[Replica]], list[dict[str, EndpointDemand]]]:
        with self.db.session() as session:
            endpoints = EndpointRepository(session).list_autoscaled()
            by_endpoint: dict[str, list[Replica]] = {e.service_id: [] for e in endpoints}
            reported: list[dict[str, EndpointDemand]] = []
            if by_endpoint:
                for replica in ReplicaRepository(session).live(by_endpoint):
                    by_endpoint[replica.endpoint_id].append(replica)
                reported = DemandRepository(session).reports_since(now - REPORT_FRESH_FOR)
        return endpoints, by_endpoint, reported

    def _apply(
        self, decided: Sequence[tuple[Endpoint, Decision]], now: datetime
    ) -> list[tuple[Endpoint, EndpointChange]]:
        applied: list[tuple[Endpoint, EndpointChange]] = []
        for endpoint, decision in decided:
            with self.db.session() as session:
                written = EndpointRepository(session).set_autoscaled_count(
                    endpoint.service_id,
                    previous=decision.previous,
                    desired=decision.desired,
                    at=now,
                )
                if not written:  # its user changed it meanwhile: decided again next look
                    tracker = self._trackers.get(endpoint.service_id)
                    if tracker is not None:
                        tracker.state = ScaleState(
                            desired=decision.previous,
                            last_change_at=tracker.state.last_change_at,
                            awake_since=tracker.state.awake_since,
                        )
                    continue
                change = scaled_change(endpoint, decision, now)
                EventRepository(session).record(change)
            applied.append((endpoint, change))
        return applied
