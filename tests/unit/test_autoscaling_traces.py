"""``decide`` every 0.5 s over long scripted load traces, on a fake clock.

A small simulation plays the controller: it samples the endpoint's demand each tick
into one ``MetricWindow``, starts replicas that turn ready ``STARTUP_S`` later, stops
the newest first, holds requests at the gateway while nothing is ready, and passes
each decision's state to the next call. Every trace checks the bounds at every tick
and how many times the count changed direction.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

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

TICK = 0.5
STARTUP_S = 10.0
T0 = 1_000_000.0  # the trace's clock starts here; the autoscaler has been awake long before

Demand = Callable[[float], float]  # seconds since T0 -> the endpoint's whole metric


@dataclass
class Simulation:
    policy: ScalePolicy
    desired: int
    ready_at: list[float] = field(default_factory=list)  # one entry per replica
    window: MetricWindow = field(init=False)
    state: ScaleState = field(init=False)
    decisions: list[tuple[float, Decision]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.window = MetricWindow(span_s=self.policy.window_s)
        self.state = ScaleState(desired=self.desired, awake_since=0.0)
        self.ready_at = [0.0] * self.desired  # the replicas asked for are ready already

    def observe(self, now: float, demand: float) -> Observation:
        ready = sum(1 for t in self.ready_at if t <= now)
        waiting = math.ceil(demand) if ready == 0 else 0
        return Observation(ready=ready, starting=len(self.ready_at) - ready, waiting=waiting)

    def run(self, demand: Demand, seconds: float, start: float = 0.0) -> None:
        """Tick from ``start`` (seconds since T0) for ``seconds``."""
        for i in range(int(seconds / TICK)):
            offset = start + i * TICK
            now = T0 + offset
            load = demand(offset)
            observed = self.observe(now, load)
            # Nothing ready: requests wait at the gateway, none is in flight.
            value = load if observed.ready > 0 or self.policy.metric is ScaleMetric.QUEUE else 0.0
            self.window.add(Sample(now, value))
            decision = decide(self.policy, self.window, observed, self.state, now)
            assert self.policy.min_instances <= decision.desired <= self.policy.max_instances
            assert decision.previous == self.state.desired
            self.state = decision.state
            self.decisions.append((offset, decision))
            self.apply(decision.desired, now)

    def apply(self, desired: int, now: float) -> None:
        while len(self.ready_at) < desired:
            self.ready_at.append(now + STARTUP_S)
        while len(self.ready_at) > desired:
            self.ready_at.pop()  # the newest (a starting one first)

    def restart(self, now_offset: float) -> None:
        """moorage restarts: a fresh window; ``desired`` and ``last_change_at`` persisted."""
        self.window = MetricWindow(span_s=self.policy.window_s)
        self.state = ScaleState(
            desired=self.state.desired,
            last_change_at=self.state.last_change_at,
            awake_since=T0 + now_offset,
        )

    # --- what the traces check ---

    def counts(self) -> list[int]:
        return [d.desired for _, d in self.decisions]

    def changes(self) -> list[tuple[float, int, int]]:
        return [(t, d.previous, d.desired) for t, d in self.decisions if d.changed]

    def direction_changes(self) -> int:
        signs = [1 if new > old else -1 for _, old, new in self.changes()]
        return sum(1 for a, b in itertools.pairwise(signs) if a != b)

    def first_change_after(self, offset: float) -> tuple[float, int, int]:
        return next(c for c in self.changes() if c[0] >= offset)

    def count_at(self, offset: float) -> int:
        return next(d.desired for t, d in reversed(self.decisions) if t <= offset)


def step(before: float, after: float, at: float) -> Demand:
    return lambda t: before if t < at else after


WIDE = ScalePolicy(target=4.0, min_instances=1, max_instances=10)


def test_a_step_up_reacts_within_two_seconds_and_settles_without_flapping() -> None:
    sim = Simulation(WIDE, desired=1)
    sim.run(step(4.0, 20.0, at=100.0), seconds=900.0)
    when, old, new = sim.first_change_after(100.0)
    assert when - 100.0 <= 2.0
    assert old == 1
    assert new >= 2
    assert sim.count_at(900.0) == 5
    assert max(sim.counts()) == 5  # never more than the load needs
    assert sim.direction_changes() == 0


def test_a_step_down_waits_the_down_delay_each_time_and_never_goes_below_the_load() -> None:
    sim = Simulation(WIDE, desired=5)
    sim.run(step(20.0, 4.0, at=100.0), seconds=1000.0)
    downs = [c for c in sim.changes() if c[0] >= 100.0]
    # The first delay starts while the minute's average still holds the old load, so
    # it goes only to the highest count asked for meanwhile (4); the next delay, all
    # of it at the new load, goes to 1.
    assert [(old, new) for _, old, new in downs] == [(5, 4), (4, 1)]
    assert downs[0][0] >= 100.0 + WIDE.scale_down_delay_s
    assert downs[1][0] >= downs[0][0] + WIDE.scale_down_delay_s
    assert downs[1][0] <= 100.0 + WIDE.window_s + 2 * WIDE.scale_down_delay_s
    assert sim.direction_changes() == 0


def test_a_ramp_only_ever_scales_up() -> None:
    sim = Simulation(WIDE, desired=1)
    sim.run(lambda t: min(40.0, t / 15.0), seconds=900.0)  # 0 -> 40 over 600 s, then flat
    assert sim.direction_changes() == 0
    assert all(new > old for _, old, new in sim.changes())
    assert sim.count_at(899.5) == 10
    counts = sim.counts()
    assert counts == sorted(counts)


def test_a_spike_scales_up_at_once_and_scales_down_only_after_panic_and_delay() -> None:
    sim = Simulation(WIDE, desired=1)
    sim.run(lambda t: 40.0 if 100.0 <= t < 102.0 else 4.0, seconds=1500.0)
    when, _, _ = sim.first_change_after(100.0)
    assert when - 100.0 <= 2.0
    peak = max(sim.counts())
    assert peak >= 5
    downs = [c for c in sim.changes() if c[2] < c[1]]
    assert downs
    # No scale-down while panicking, and the down delay counts from the panic's end.
    last_panic = max(t for t, d in sim.decisions if d.panicking)
    assert downs[0][0] >= last_panic + WIDE.scale_down_delay_s
    assert sim.count_at(1499.5) == 1
    assert sim.direction_changes() == 1  # up, then down (in one or two steps)


def sawtooth(low: float, high: float, period: float) -> Demand:
    return lambda t: low + (high - low) * ((t % period) / period)


def test_a_sawtooth_with_a_30_s_period_is_smoothed_by_the_minute_window() -> None:
    # 2 -> 14 each 30 s (mean 8, target 4): peaks reach 1.75x two replicas, no panic.
    sim = Simulation(WIDE, desired=2)
    sim.run(sawtooth(2.0, 14.0, 30.0), seconds=1200.0)
    assert sim.changes() == []


def test_a_sawtooth_seen_through_a_short_window_never_scales_down_mid_trace() -> None:
    # A 10 s window follows each tooth: the recommendation swings every 30 s, so no
    # stretch below the count lasts the 300 s down delay until the load stops.
    policy = ScalePolicy(target=4.0, max_instances=10, window_s=10.0)
    sim = Simulation(policy, desired=2)
    sim.run(lambda t: sawtooth(0.0, 16.0, 30.0)(t) if t < 900.0 else 0.0, seconds=1600.0)
    mid = [c for c in sim.changes() if c[0] < 900.0]
    assert all(new > old for _, old, new in mid)
    assert len(mid) <= 3
    downs = [c for c in sim.changes() if c[2] < c[1]]
    assert [new for _, _, new in downs][-1:] == [1]
    assert all(when >= 900.0 + policy.scale_down_delay_s for when, _, _ in downs)
    assert sim.direction_changes() == 1


def test_silence_goes_to_the_minimum() -> None:
    sim = Simulation(WIDE, desired=4)
    sim.run(step(16.0, 0.0, at=100.0), seconds=1000.0)
    downs = sim.changes()
    # As for a step down: the first delay still saw the minute's average fall through 3.
    assert [(old, new) for _, old, new in downs] == [(4, 3), (3, 1)]
    assert downs[0][0] >= 100.0 + WIDE.scale_down_delay_s
    assert downs[1][0] >= 100.0 + WIDE.window_s + WIDE.scale_down_delay_s
    assert sim.count_at(999.5) == 1


def test_silence_with_min_zero_goes_to_zero_after_a_quiet_window_and_the_down_delay() -> None:
    policy = ScalePolicy(target=4.0, min_instances=0, max_instances=10)
    sim = Simulation(policy, desired=1)
    sim.run(step(3.0, 0.0, at=100.0), seconds=1200.0)
    downs = sim.changes()
    assert [(old, new) for _, old, new in downs] == [(1, 0)]
    when = downs[0][0]
    # The last request was seen at 99.5 s: the window is all zeros from 159.5 s on.
    assert when == 99.5 + policy.window_s + policy.scale_down_delay_s
    assert "idle for 300 s" in sim.decisions[int(when / TICK)][1].reason


def test_silence_from_two_replicas_with_min_zero_ends_at_zero() -> None:
    policy = ScalePolicy(target=4.0, min_instances=0, max_instances=10)
    sim = Simulation(policy, desired=2)
    sim.run(step(6.0, 0.0, at=100.0), seconds=1200.0)
    assert [(old, new) for _, old, new in sim.changes()] == [(2, 1), (1, 0)]
    assert sim.changes()[0][0] >= 100.0 + policy.scale_down_delay_s
    assert sim.direction_changes() == 0


def test_from_zero_a_request_activates_a_replica_and_it_stays_while_load_lasts() -> None:
    policy = ScalePolicy(target=4.0, min_instances=0, max_instances=10)
    sim = Simulation(policy, desired=0)
    # A request every other second from 100 s to 400 s, then nothing.
    sim.run(lambda t: 1.0 if 100.0 <= t < 400.0 and int(t) % 2 == 0 else 0.0, seconds=1200.0)
    changes = [(old, new) for _, old, new in sim.changes()]
    assert changes == [(0, 1), (1, 0)]  # no 0 -> 1 -> 0 while requests still come
    assert sim.changes()[0][0] - 100.0 <= TICK
    last_request = max(t for t, d in sim.decisions if t < 400.0 and int(t) % 2 == 0)
    assert sim.changes()[1][0] >= last_request + policy.window_s + policy.scale_down_delay_s


def test_noise_around_the_target_never_changes_the_count() -> None:
    rng = random.Random(7)

    def noise(capacity: float) -> Demand:
        return lambda _t: capacity * (1.0 + rng.uniform(-0.05, 0.05))

    for replicas in (1, 3, 8):
        sim = Simulation(WIDE, desired=replicas)
        sim.run(noise(replicas * WIDE.target), seconds=1800.0)
        assert sim.changes() == [], replicas
        assert not any(d.panicking for _, d in sim.decisions)


def test_a_restart_in_the_middle_does_not_scale_down_in_its_first_window() -> None:
    sim = Simulation(WIDE, desired=1)
    full = step(4.0, 28.0, at=10.0)
    sim.run(full, seconds=300.0)
    assert sim.count_at(299.5) == 7
    change_before = sim.state.last_change_at
    # moorage restarts at 300 s during a lull of 20 s; load then comes back.
    sim.restart(300.0)
    assert sim.state.last_change_at == change_before
    sim.run(lambda t: 0.0 if t < 320.0 else 28.0, seconds=600.0, start=300.0)
    assert [c for c in sim.changes() if c[0] >= 300.0] == []


def test_after_a_restart_low_load_scales_down_only_after_a_full_window_and_the_delay() -> None:
    sim = Simulation(WIDE, desired=7)
    sim.run(lambda _t: 28.0, seconds=100.0)
    sim.restart(100.0)
    sim.run(lambda _t: 4.0, seconds=800.0, start=100.0)
    downs = [c for c in sim.changes() if c[2] < c[1]]
    assert [(old, new) for _, old, new in downs] == [(7, 1)]
    assert downs[0][0] >= 100.0 + WIDE.window_s + WIDE.scale_down_delay_s


def test_the_up_delay_is_kept_for_a_rise_short_of_panic() -> None:
    policy = ScalePolicy(target=4.0, max_instances=10, scale_up_delay_s=30.0)
    sim = Simulation(policy, desired=2)
    sim.run(step(8.0, 12.0, at=100.0), seconds=300.0)  # 1.5x two replicas: no panic
    assert not any(d.panicking for _, d in sim.decisions)
    (when, old, new), *rest = sim.changes()
    assert rest == []
    assert (old, new) == (2, 3)
    # Above from the first tick whose average passes 10% over capacity, then 30 s.
    above = next(t for t, d in sim.decisions if d.state.above_since is not None)
    assert when >= above + policy.scale_up_delay_s
    assert when >= 100.0 + policy.scale_up_delay_s


def test_bounds_hold_at_every_step_of_a_load_far_past_the_maximum() -> None:
    policy = ScalePolicy(target=4.0, min_instances=2, max_instances=3)
    sim = Simulation(policy, desired=2)
    sim.run(lambda t: 400.0 if 50.0 <= t < 400.0 else 0.0, seconds=1000.0)
    assert set(sim.counts()) <= {2, 3}
    assert sim.count_at(399.5) == 3
    assert sim.count_at(999.5) == 2
    assert sim.direction_changes() == 1


def test_the_queue_metric_sees_requests_waiting_at_zero() -> None:
    policy = ScalePolicy(metric=ScaleMetric.QUEUE, target=4.0, min_instances=0, max_instances=10)
    sim = Simulation(policy, desired=0)
    sim.run(step(0.0, 12.0, at=50.0), seconds=200.0)
    when, old, new = sim.changes()[0]
    assert old == 0
    assert new >= 1
    assert when - 50.0 <= 2.0
    assert sim.count_at(199.5) == 3
    assert sim.direction_changes() == 0


def test_rps_follows_the_arrival_rate() -> None:
    policy = ScalePolicy(metric=ScaleMetric.RPS, target=2.0, max_instances=10)
    sim = Simulation(policy, desired=1)
    sim.run(step(2.0, 7.0, at=50.0), seconds=400.0)
    assert sim.count_at(399.5) == 4
    assert "rps 7 over 60 s at target 2 per replica" in sim.decisions[-1][1].reason
    assert sim.direction_changes() == 0
