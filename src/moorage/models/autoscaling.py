"""How many replicas an endpoint should run, decided from its recent load.

Pure: the controller keeps one ``MetricWindow`` per endpoint, adds a ``Sample`` of
the endpoint's whole metric every pass, and calls ``decide`` with the policy, what
it observes now, the ``ScaleState`` the previous call returned and ``now`` (plain
seconds, so tests drive it with a fake clock). ``decide`` returns the count to ask
for and a readable reason; it never reads a clock, the store or the network.

Each metric has one recommender (``RECOMMENDERS``): the number of replicas its
stable-window average asks for, as a real number. Everything else (tolerance,
activation from zero, panic, the up and down delays, the guards that hold a
scale-down, and bounds) lives in ``decide``, once for every metric, so a metric
added later gets the same protections. ``docs/autoscaling.md`` ("How a decision is
made") explains each rule and why.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

__all__ = [
    "RECOMMENDERS",
    "Decision",
    "MetricWindow",
    "Observation",
    "Recommend",
    "Sample",
    "ScaleMetric",
    "ScalePolicy",
    "ScaleState",
    "decide",
]

# A quotient such as 0.3 / 0.1 lands a hair above 3; without this slack ``ceil`` would
# ask for a fourth replica that nothing needs.
_EPSILON = 1e-9


class ScaleMetric(enum.StrEnum):
    """What a sample measures; the words on the wire and in the store."""

    CONCURRENCY = (
        "concurrency"  # requests in flight at the endpoint's replicas (through the gateway)
    )
    RPS = "rps"  # requests arriving per second
    QUEUE = "queue"  # requests waiting at the gateway plus in flight


def _require(ok: bool, name: str, allowed: str, value: object) -> None:
    if not ok:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True)
class ScalePolicy:
    """What the owner of an endpoint asked the autoscaler to do."""

    metric: ScaleMetric = ScaleMetric.CONCURRENCY
    target: float = 4.0  # metric value per replica the autoscaler aims at
    min_instances: int = 1  # 0 allowed: scale to zero
    max_instances: int = 4
    scale_up_delay_s: float = 0.0
    scale_down_delay_s: float = 300.0
    window_s: float = 60.0  # the stable window the metric is averaged over
    # constants of the panic path, fields so tests can set them:
    panic_window_s: float = 2.0
    panic_threshold: float = 2.0  # demand at this multiple of ready capacity
    tolerance: float = 0.1  # no change while within ±10% of the current count's capacity

    def __post_init__(self) -> None:
        _require(
            isinstance(self.metric, ScaleMetric),
            "metric",
            "one of " + ", ".join(m.value for m in ScaleMetric),
            self.metric,
        )
        _require(_finite(self.target) and self.target > 0, "target", "above 0", self.target)
        _require(
            isinstance(self.min_instances, int) and self.min_instances >= 0,
            "min_instances",
            "a whole number of 0 or more",
            self.min_instances,
        )
        _require(
            isinstance(self.max_instances, int)
            and self.max_instances >= max(1, self.min_instances),
            "max_instances",
            f"a whole number of at least 1 and at least min_instances ({self.min_instances})",
            self.max_instances,
        )
        for name in ("scale_up_delay_s", "scale_down_delay_s"):
            value = getattr(self, name)
            _require(_finite(value) and value >= 0, name, "0 or more seconds", value)
        _require(
            _finite(self.window_s) and self.window_s > 0,
            "window_s",
            "above 0 seconds",
            self.window_s,
        )
        _require(
            _finite(self.panic_window_s) and 0 < self.panic_window_s <= self.window_s,
            "panic_window_s",
            f"above 0 seconds and at most window_s ({self.window_s:g})",
            self.panic_window_s,
        )
        _require(
            _finite(self.panic_threshold) and self.panic_threshold >= 1,
            "panic_threshold",
            "1 or more (a multiple of the ready replicas' capacity)",
            self.panic_threshold,
        )
        _require(
            _finite(self.tolerance) and 0 <= self.tolerance < 1,
            "tolerance",
            "from 0 up to (not including) 1",
            self.tolerance,
        )


@dataclass(frozen=True)
class Sample:
    """The endpoint's whole metric (the sum over its replicas) at one moment."""

    at: float  # seconds (epoch), when measured
    value: float  # e.g. 7 in flight or 3.5 req/s

    def __post_init__(self) -> None:
        _require(_finite(self.at), "at", "a finite number of seconds", self.at)
        _require(
            _finite(self.value) and self.value >= 0,
            "value",
            "a finite number of 0 or more",
            self.value,
        )


class MetricWindow:
    """The recent samples of one endpoint, oldest first, bounded in time and count.

    Mutable: the controller keeps one per endpoint and adds a sample every pass. A
    restarted controller starts with an empty one, which is why ``decide`` holds
    scale-downs for a window after ``ScaleState.awake_since``.
    """

    def __init__(self, span_s: float, max_samples: int = 2000) -> None:
        _require(_finite(span_s) and span_s > 0, "span_s", "above 0 seconds", span_s)
        _require(
            isinstance(max_samples, int) and max_samples >= 1,
            "max_samples",
            "a whole number of 1 or more",
            max_samples,
        )
        self.span_s = float(span_s)
        self.max_samples = max_samples
        self._samples: list[Sample] = []

    def add(self, sample: Sample) -> None:
        """Keep ``sample`` in time order; drop samples more than ``span_s`` older than
        the newest, and the oldest past ``max_samples``."""
        times = [s.at for s in self._samples]
        self._samples.insert(bisect.bisect_right(times, sample.at), sample)
        oldest_kept = self._samples[-1].at - self.span_s
        stale = bisect.bisect_left([s.at for s in self._samples], oldest_kept)
        excess = len(self._samples) - self.max_samples
        drop = max(stale, excess)
        if drop > 0:
            del self._samples[:drop]

    def samples(self) -> tuple[Sample, ...]:
        return tuple(self._samples)

    def within(self, now: float, over_s: float) -> list[Sample]:
        """The samples taken in ``(now - over_s, now]``."""
        return [s for s in self._samples if now - over_s < s.at <= now]

    def average(self, now: float, over_s: float) -> float | None:
        """Mean of the samples in ``(now - over_s, now]``; ``None`` when there are none."""
        recent = self.within(now, over_s)
        if not recent:
            return None
        return math.fsum(s.value for s in recent) / len(recent)

    def clear(self) -> None:
        self._samples.clear()


@dataclass(frozen=True)
class Observation:
    """What the controller sees of the endpoint now, besides its metric."""

    ready: int  # replicas ready now
    starting: int  # replicas placed but not ready yet (or waiting for capacity)
    waiting: int  # requests held at the gateway now

    def __post_init__(self) -> None:
        for name in ("ready", "starting", "waiting"):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and value >= 0, name, "a whole number of 0 or more", value
            )


@dataclass(frozen=True)
class ScaleState:
    """What one decision hands to the next; the controller keeps it per endpoint and
    persists ``desired`` and ``last_change_at`` across restarts."""

    desired: (
        int  # the count the autoscaler currently asks for (the endpoint's target_instance_number)
    )
    last_change_at: float | None = None
    awake_since: float = (
        0.0  # when this autoscaler began observing (moorage start or the endpoint turned auto)
    )
    panic_until: float | None = None
    above_since: float | None = None  # since when the recommendation has stayed above `desired`
    below_since: float | None = None  # since when it has stayed below
    below_peak: int = 0  # the highest recommendation seen while below (scale down only to it)

    def __post_init__(self) -> None:
        _require(
            isinstance(self.desired, int) and self.desired >= 0,
            "desired",
            "a whole number of 0 or more",
            self.desired,
        )


@dataclass(frozen=True)
class Decision:
    """The count to ask for, why, and the state for the next call."""

    desired: int
    previous: int
    metric_value: float | None  # the stable-window average used (None: no samples)
    reason: str  # one readable clause: "concurrency 7.6 over 60 s at target 2 per replica: 3 -> 4"
    panicking: bool
    state: ScaleState  # the state to pass to the next call
    # What kind of decision: "activate", "panic", "up", "down", "idle", "bounds", "hold"
    # (a change wanted but held by a delay or a guard), "steady" or "no data".
    kind: str = field(default="steady")

    @property
    def changed(self) -> bool:
        return self.desired != self.previous


# (window, policy, now) -> wanted replicas as a real number (value / target); None: no data.
Recommend = Callable[[MetricWindow, ScalePolicy, float], float | None]


def _per_target(window: MetricWindow, policy: ScalePolicy, now: float) -> float | None:
    average = window.average(now, policy.window_s)
    return None if average is None else average / policy.target


def _recommend_concurrency(window: MetricWindow, policy: ScalePolicy, now: float) -> float | None:
    """Requests in flight are an instantaneous count: their mean over the stable window,
    divided by the concurrency one replica should carry."""
    return _per_target(window, policy, now)


def _recommend_rps(window: MetricWindow, policy: ScalePolicy, now: float) -> float | None:
    """Each sample is an arrival rate over the pass before it; with passes at a steady
    interval their mean is the window's arrival rate, divided by the rate one replica
    should serve."""
    return _per_target(window, policy, now)


def _recommend_queue(window: MetricWindow, policy: ScalePolicy, now: float) -> float | None:
    """Waiting plus in flight is an instantaneous count like concurrency, but it keeps
    growing while replicas are short, so it asks for more sooner."""
    return _per_target(window, policy, now)


RECOMMENDERS: Mapping[ScaleMetric, Recommend] = MappingProxyType(
    {
        ScaleMetric.CONCURRENCY: _recommend_concurrency,
        ScaleMetric.RPS: _recommend_rps,
        ScaleMetric.QUEUE: _recommend_queue,
    }
)


def _num(value: float) -> str:
    """A metric value or a number of seconds for a reason: ``7.6``, ``60``, ``0.25``."""
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _replicas(count: int) -> str:
    return f"{count} replica" if count == 1 else f"{count} replicas"


def _requests(count: int) -> str:
    return f"{count} request" if count == 1 else f"{count} requests"


def _clamp(policy: ScalePolicy, count: int) -> int:
    """Bounds: the one place every count passes through last, whatever the metric."""
    return max(policy.min_instances, min(policy.max_instances, count))


# More replicas than any bound allows: what an unbounded wish is rounded to, so that
# demand over a tiny target never overflows (bounds then clamp it).
_MOST_REPLICAS = 1_000_000


def _rounded_up(wanted: float) -> int:
    """Whole replicas for ``wanted``; any demand at all asks for at least one."""
    if wanted <= 0 or math.isnan(wanted):
        return 0
    if wanted >= _MOST_REPLICAS:
        return _MOST_REPLICAS
    return max(1, math.ceil(wanted - _EPSILON))


def decide(
    policy: ScalePolicy, window: MetricWindow, observed: Observation, state: ScaleState, now: float
) -> Decision:
    """The one wrapper every metric goes through: bounds, delays, panic, guards."""
    metric, target = policy.metric.value, policy.target
    previous = state.desired
    base = _clamp(policy, previous)  # a count out of bounds is corrected at once
    stable = window.average(now, policy.window_s)
    wanted = RECOMMENDERS[policy.metric](window, policy, now)
    per = f"at target {_num(target)} per replica"
    stable_clause = (
        f"no {metric} samples over {_num(policy.window_s)} s"
        if stable is None
        else f"{metric} {_num(stable)} over {_num(policy.window_s)} s {per}"
    )

    # Panic: demand over the short window at `panic_threshold` times the ready capacity.
    burst = window.within(now, policy.panic_window_s)
    panic_average = window.average(now, policy.panic_window_s)
    panic_now = panic_average is not None and panic_average >= (
        policy.panic_threshold * max(observed.ready, 1) * target
    )
    panic_until = (
        state.panic_until if state.panic_until is not None and now < state.panic_until else None
    )
    if panic_now:
        panic_until = now + policy.window_s
    panicking = panic_until is not None
    burst_wants = 0 if panic_average is None else _rounded_up(panic_average / target)
    burst_clause = (
        f"{metric} {_num(panic_average)} over {_num(policy.panic_window_s)} s {per}"
        if panic_average is not None
        else f"no {metric} samples over {_num(policy.panic_window_s)} s"
    )

    def result(
        desired: int,
        kind: str,
        reason: str,
        above_since: float | None = None,
        below_since: float | None = None,
        below_peak: int = 0,
    ) -> Decision:
        desired = _clamp(policy, desired)
        if desired == base != previous:  # the only change is the clamp: at once
            kind = "bounds"
            reason = (
                f"bounds {policy.min_instances}..{policy.max_instances} ({stable_clause}): "
                f"{previous} -> {desired}"
            )
        elif desired != previous:
            reason = f"{reason}: {previous} -> {desired}"
        else:
            reason = f"{reason}: keeps {previous}"
        changed = desired != previous
        if changed:  # a new count starts both delays afresh
            above_since, below_since, below_peak = None, None, 0
        new_state = replace(
            state,
            desired=desired,
            last_change_at=now if changed else state.last_change_at,
            panic_until=panic_until,
            above_since=above_since,
            below_since=below_since,
            below_peak=below_peak,
        )
        return Decision(desired, previous, stable, reason, panicking, new_state, kind)

    # Activation from zero: a request is waiting or has just been seen. Held requests
    # are each one replica's worth of 1/target, whatever the metric: a burst of 50 at
    # target 4 asks for 13 (within bounds) at once, not one replica that gets all 50.
    if base == 0 and (observed.waiting > 0 or any(s.value > 0 for s in burst)):
        cause = (
            f"{_requests(observed.waiting)} waiting at the gateway, {burst_clause}"
            if observed.waiting > 0
            else burst_clause
        )
        held_wants = _rounded_up(observed.waiting / target)
        return result(max(1, burst_wants, held_wants), "activate", f"activate: {cause}")

    # Panic scales up at once, never down.
    if panic_now and _clamp(policy, burst_wants) > base:
        return result(
            burst_wants,
            "panic",
            f"panic: {burst_clause} is at least {_num(policy.panic_threshold)}x the capacity "
            f"of {_replicas(observed.ready)} ready",
        )

    # No data: keep the count (bounds aside); never scale down on missing samples.
    if wanted is None or stable is None:
        return result(base, "no data", stable_clause)

    # Tolerance: close enough to what the current count carries.
    if base > 0 and wanted > 0 and abs(wanted / base - 1) <= policy.tolerance:
        return result(
            base,
            "steady",
            f"{stable_clause} is within {_num(policy.tolerance * 100)}% of the capacity "
            f"of {_replicas(base)}",
        )
    recommended = _clamp(policy, _rounded_up(wanted))

    if recommended > base:
        above_since = state.above_since if state.above_since is not None else now
        held = now - above_since
        if held >= policy.scale_up_delay_s:
            return result(recommended, "up", stable_clause)
        return result(
            base,
            "hold",
            f"{stable_clause} wants {recommended}, held for {_num(held)} s of the "
            f"{_num(policy.scale_up_delay_s)} s scale-up delay",
            above_since=above_since,
        )

    if recommended < base:
        guard = _down_guard(policy, observed, state, now, panic_until)
        if guard is not None:
            # The delay counts only while nothing holds the count: a replica still
            # starting or a request still waiting says the load is not settled.
            return result(base, "hold", f"{stable_clause} wants {recommended}, held {guard}")
        below_since = state.below_since if state.below_since is not None else now
        peak = recommended if state.below_since is None else max(state.below_peak, recommended)
        held = now - below_since
        if held >= policy.scale_down_delay_s:
            if peak == 0:
                return result(0, "idle", f"{stable_clause}, idle for {_num(held)} s")
            return result(
                peak, "down", f"{stable_clause}, below {base} for {_num(held)} s (peak {peak})"
            )
        return result(
            base,
            "hold",
            f"{stable_clause} wants {recommended}, below for {_num(held)} s of the "
            f"{_num(policy.scale_down_delay_s)} s scale-down delay",
            below_since=below_since,
            below_peak=peak,
        )

    return result(base, "steady", stable_clause)


def _down_guard(
    policy: ScalePolicy,
    observed: Observation,
    state: ScaleState,
    now: float,
    panic_until: float | None,
) -> str | None:
    """Why a scale-down must wait now, or ``None`` when nothing holds it."""
    if panic_until is not None:
        return f"while panicking (until {_num(panic_until - now)} s from now)"
    if observed.waiting > 0:
        verb = "waits" if observed.waiting == 1 else "wait"
        return f"while {_requests(observed.waiting)} {verb} at the gateway"
    if observed.starting > 0:
        verb = "starts" if observed.starting == 1 else "start"
        return f"while {_replicas(observed.starting)} {verb}"
    awake = now - state.awake_since
    if awake < policy.window_s:
        return (
            f"while the autoscaler has observed for {_num(awake)} s of its "
            f"{_num(policy.window_s)} s window"
        )
    return None
