"""Whatever the samples, observations, policy and restarts, ``decide`` keeps its promises.

Random policies and random sequences of calls (irregular gaps, any metric values,
replicas ready, starting, requests waiting, the odd restart with a fresh window).
Each call is checked against the bounds, and each scale-down or delayed scale-up
against a history the test keeps itself: the calls before it, walked back while the
count stayed put and nothing held it, must span the policy's delay.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import event, given, settings
from hypothesis import strategies as st

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

T0 = 50_000.0


@st.composite
def policies(draw: st.DrawFn) -> ScalePolicy:
    minimum = draw(st.integers(0, 3))
    window = draw(st.sampled_from([10.0, 60.0]))
    return ScalePolicy(
        metric=draw(st.sampled_from(list(ScaleMetric))),
        target=draw(st.sampled_from([0.5, 1.0, 2.0, 4.0])),
        min_instances=minimum,
        max_instances=draw(st.integers(max(1, minimum), minimum + 6)),
        scale_up_delay_s=draw(st.sampled_from([0.0, 5.0, 30.0])),
        scale_down_delay_s=draw(st.sampled_from([0.0, 10.0, 60.0, 300.0])),
        window_s=window,
        panic_window_s=draw(st.sampled_from([1.0, 2.0])),
        panic_threshold=draw(st.sampled_from([1.5, 2.0])),
        tolerance=draw(st.sampled_from([0.0, 0.1])),
    )


call_steps = st.lists(
    st.tuples(
        st.sampled_from([0.5, 0.5, 1.0, 5.0, 30.0, 120.0]),  # seconds since the previous call
        st.one_of(st.just(0.0), st.floats(0.0, 60.0)),  # the metric sampled at this call
        st.integers(0, 8),  # ready
        st.sampled_from([0, 0, 0, 1, 2]),  # starting
        st.sampled_from([0, 0, 0, 0, 1, 5]),  # waiting
        st.sampled_from([False] * 15 + [True]),  # moorage restarts just before this call
        st.booleans(),  # whether a sample is taken at all
    ),
    min_size=1,
    max_size=80,
)


@dataclass(frozen=True)
class Call:
    now: float
    observed: Observation
    before: ScaleState
    stable: float | None
    decision: Decision


def clamp(policy: ScalePolicy, count: int) -> int:
    return max(policy.min_instances, min(policy.max_instances, count))


def settled_since(history: list[Call], policy: ScalePolicy, base: int, wants: str) -> float | None:
    """Walk back from the newest call while the count was ``base`` throughout, nothing
    held a change, and the stable average stayed above (``wants == "up"``) or below
    ``base``'s capacity; the time of the earliest such call."""
    since = None
    for call in reversed(history):
        capacity = base * policy.target
        if clamp(policy, call.before.desired) != base or call.stable is None:
            break
        if wants == "down":
            held = (
                call.decision.panicking
                or call.observed.waiting > 0
                or call.observed.starting > 0
                or call.now - call.before.awake_since < policy.window_s
            )
            if held or not call.stable < capacity:
                break
        elif not call.stable > capacity:
            break
        since = call.now
    return since


@settings(max_examples=300, deadline=None)
@given(
    policy=policies(),
    start=st.integers(0, 12),
    awake_ago=st.sampled_from([0.0, 5.0, 1_000.0]),
    steps=call_steps,
)
def test_bounds_guards_and_delays_hold_for_any_history(
    policy: ScalePolicy,
    start: int,
    awake_ago: float,
    steps: list[tuple[float, float, int, int, int, bool, bool]],
) -> None:
    window = MetricWindow(span_s=policy.window_s)
    state = ScaleState(desired=start, awake_since=T0 - awake_ago)
    now = T0
    history: list[Call] = []
    for gap, value, ready, starting, waiting, restart, sampled in steps:
        now += gap
        if restart:
            window = MetricWindow(span_s=policy.window_s)
            state = ScaleState(
                desired=state.desired, last_change_at=state.last_change_at, awake_since=now
            )
        if sampled:
            window.add(Sample(now, value))
        observed = Observation(ready=ready, starting=starting, waiting=waiting)
        stable = window.average(now, policy.window_s)
        burst = [s for s in window.samples() if now - policy.panic_window_s < s.at <= now]
        decision = decide(policy, window, observed, state, now)
        history.append(Call(now, observed, state, stable, decision))
        event(decision.kind)

        # Bounds, and a consistent hand-over to the next call.
        assert policy.min_instances <= decision.desired <= policy.max_instances
        assert decision.previous == state.desired
        assert decision.state.desired == decision.desired
        assert decision.state.awake_since == state.awake_since
        assert decision.changed == (decision.desired != state.desired)

        base = clamp(policy, state.desired)
        if decision.desired < base:  # a scale-down, not a clamp
            assert not decision.panicking
            assert state.panic_until is None or now >= state.panic_until
            assert waiting == 0
            assert starting == 0
            assert now - state.awake_since >= policy.window_s
            assert stable is not None
            assert decision.kind in ("down", "idle")
            if policy.scale_down_delay_s > 0:
                assert state.below_since is not None
                assert now - state.below_since >= policy.scale_down_delay_s
            since = settled_since(history, policy, base, "down")
            assert since is not None
            assert now - since >= policy.scale_down_delay_s
            if decision.desired == 0:
                assert all(s.value == 0 for s in window.samples() if s.at > now - policy.window_s)
        elif decision.desired > base:  # a scale-up, not a clamp
            activated = base == 0 and (waiting > 0 or any(s.value > 0 for s in burst))
            if not activated and decision.kind != "panic":
                assert decision.kind == "up"
                since = settled_since(history, policy, base, "up")
                assert since is not None
                assert now - since >= policy.scale_up_delay_s
            if decision.kind == "panic":
                assert decision.panicking
                assert decision.state.panic_until == now + policy.window_s
        if decision.changed:
            assert decision.state.last_change_at == now
            assert decision.state.below_since is None
            assert decision.state.above_since is None
        state = decision.state
