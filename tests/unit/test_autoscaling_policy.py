"""Each rule of ``decide``, one situation at a time, on a fake clock (plain floats).

Every test asserts the exact count asked for and that the reason names the metric
value and the target, as a user reading ``moorage``'s events would check them.
"""

from __future__ import annotations

import pytest

from moorage.models.autoscaling import (
    RECOMMENDERS,
    Decision,
    MetricWindow,
    Observation,
    Sample,
    ScaleMetric,
    ScalePolicy,
    ScaleState,
    decide,
)

NOW = 10_000.0
AWAKE = 0.0  # long awake: the restart guard is out of the way unless a test sets it


def window_of(
    value: float, *, span: float = 60.0, end: float = NOW, step: float = 0.5
) -> MetricWindow:
    """A window holding ``value`` every ``step`` seconds over the ``span`` up to ``end``."""
    window = MetricWindow(span_s=span)
    count = int(span / step)
    for i in range(count):
        window.add(Sample(end - (count - 1 - i) * step, value))
    return window


def ready(count: int, *, starting: int = 0, waiting: int = 0) -> Observation:
    return Observation(ready=count, starting=starting, waiting=waiting)


def at(desired: int, **fields: float | int | None) -> ScaleState:
    return ScaleState(desired=desired, awake_since=AWAKE, **fields)  # type: ignore[arg-type]


def names_value_and_target(decision: Decision, value: str, target: str) -> None:
    assert value in decision.reason, decision.reason
    assert f"target {target} per replica" in decision.reason, decision.reason


# --- rule 1: recommendation and tolerance ---------------------------------------------


@pytest.mark.parametrize("metric", list(ScaleMetric))
def test_every_metric_has_a_recommender_that_divides_the_average_by_the_target(
    metric: ScaleMetric,
) -> None:
    policy = ScalePolicy(metric=metric, target=2.0)
    assert RECOMMENDERS[metric](window_of(7.0), policy, NOW) == pytest.approx(3.5)
    assert RECOMMENDERS[metric](MetricWindow(60.0), policy, NOW) is None


@pytest.mark.parametrize("metric", list(ScaleMetric))
def test_the_recommendation_is_the_average_over_the_target_rounded_up(metric: ScaleMetric) -> None:
    policy = ScalePolicy(metric=metric, target=2.0, max_instances=10)
    decision = decide(policy, window_of(7.6), ready(3), at(3), NOW)
    assert decision.desired == 4
    assert decision.reason == f"{metric} 7.6 over 60 s at target 2 per replica: 3 -> 4"
    assert decision.metric_value == pytest.approx(7.6)
    assert decision.changed
    assert decision.state.desired == 4
    assert decision.state.last_change_at == NOW


def test_an_exact_multiple_of_the_target_asks_for_no_extra_replica() -> None:
    # 0.3 / 0.1 is a hair above 3 in floating point.
    policy = ScalePolicy(target=0.1, max_instances=10, tolerance=0.0)
    decision = decide(policy, window_of(0.3), ready(2), at(2), NOW)
    assert decision.desired == 3


def test_within_tolerance_of_the_current_capacity_the_count_stays() -> None:
    policy = ScalePolicy(target=4.0, max_instances=10)
    # 2 replicas carry 8; 8.7 is 8.75% over: within 10%, although ceil(8.7/4) = 3.
    decision = decide(policy, window_of(8.7), ready(2), at(2), NOW)
    assert decision.desired == 2
    assert not decision.changed
    assert "within 10% of the capacity of 2 replicas" in decision.reason
    names_value_and_target(decision, "concurrency 8.7 over 60 s", "4")


def test_just_outside_tolerance_the_count_moves() -> None:
    policy = ScalePolicy(target=4.0, max_instances=10)
    decision = decide(policy, window_of(8.9), ready(2), at(2), NOW)
    assert decision.desired == 3
    names_value_and_target(decision, "concurrency 8.9", "4")


# --- rule 2: activation from zero -------------------------------------------------------


def test_a_request_waiting_at_zero_activates_one_replica_at_once() -> None:
    policy = ScalePolicy(min_instances=0, scale_up_delay_s=600.0)
    # Concurrency is 0 at zero replicas: the request waits at the gateway.
    decision = decide(policy, window_of(0.0), ready(0, waiting=1), at(0), NOW)
    assert decision.desired == 1
    assert decision.kind == "activate"
    assert decision.reason.startswith("activate: 1 request waiting at the gateway")
    names_value_and_target(decision, "concurrency 0 over 2 s", "4")


def test_activation_asks_for_more_when_the_panic_window_says_so() -> None:
    policy = ScalePolicy(min_instances=0, max_instances=10, target=2.0, scale_up_delay_s=600.0)
    window = MetricWindow(60.0)
    for i in range(4):
        window.add(Sample(NOW - 1.5 + i * 0.5, 7.0))  # 7 in the last 2 s
    decision = decide(policy, window, ready(0), at(0), NOW)
    assert decision.desired == 4
    assert decision.kind == "activate"
    names_value_and_target(decision, "concurrency 7 over 2 s", "2")


def test_activation_without_samples_still_activates_on_a_waiting_request() -> None:
    policy = ScalePolicy(min_instances=0)
    decision = decide(policy, MetricWindow(60.0), ready(0, waiting=3), at(0), NOW)
    assert decision.desired == 1
    assert decision.reason.startswith("activate: 3 requests waiting")


def test_at_zero_with_nothing_waiting_nothing_starts() -> None:
    policy = ScalePolicy(min_instances=0)
    decision = decide(policy, window_of(0.0), ready(0), at(0), NOW)
    assert decision.desired == 0
    assert not decision.changed
    names_value_and_target(decision, "concurrency 0 over 60 s", "4")


# --- rule 3: panic ------------------------------------------------------------------------


def burst(value: float, *, base: float = 4.0) -> MetricWindow:
    """A minute at ``base`` whose last 2 s are at ``value``."""
    window = window_of(base, end=NOW - 2.0)
    for i in range(4):
        window.add(Sample(NOW - 1.5 + i * 0.5, value))
    return window


def test_demand_at_twice_the_ready_capacity_scales_up_at_once_despite_the_up_delay() -> None:
    policy = ScalePolicy(target=4.0, max_instances=10, scale_up_delay_s=600.0)
    decision = decide(policy, burst(20.0), ready(1), at(1), NOW)
    assert decision.desired == 5
    assert decision.panicking
    assert decision.kind == "panic"
    assert decision.state.panic_until == NOW + 60.0
    names_value_and_target(decision, "concurrency 20 over 2 s", "4")
    assert "2x the capacity of 1 replica ready" in decision.reason


def test_just_under_the_panic_threshold_is_no_panic() -> None:
    policy = ScalePolicy(target=4.0, max_instances=10, scale_up_delay_s=600.0)
    decision = decide(policy, burst(15.9), ready(2), at(2), NOW)
    assert not decision.panicking
    assert decision.desired == 2  # the minute's average wants 2, and the up delay holds
    assert decision.state.panic_until is None
    names_value_and_target(decision, "concurrency", "4")


def test_panic_never_scales_down() -> None:
    # One ready of four asked for: the burst is twice its capacity but wants only 2.
    policy = ScalePolicy(target=4.0, max_instances=10, scale_down_delay_s=0.0)
    decision = decide(policy, burst(8.0, base=1.0), ready(1, starting=0), at(4), NOW)
    assert decision.panicking
    assert decision.desired == 4
    assert decision.state.panic_until == NOW + 60.0
    assert "held while panicking" in decision.reason
    names_value_and_target(decision, "concurrency", "4")


def test_no_scale_down_until_the_panic_ends_and_then_only_after_the_down_delay() -> None:
    policy = ScalePolicy(target=4.0, max_instances=10, scale_down_delay_s=30.0)
    state = at(5, panic_until=NOW + 10.0)
    low = window_of(4.0, end=NOW + 60.0, span=120.0)
    held = decide(policy, low, ready(5), state, NOW + 9.5)
    assert held.desired == 5
    assert held.panicking
    assert held.state.below_since is None
    # Leaving panic does not undo the scale-up: the down delay starts now.
    left = decide(policy, low, ready(5), held.state, NOW + 10.0)
    assert not left.panicking
    assert left.desired == 5
    assert left.state.below_since == NOW + 10.0
    assert left.state.panic_until is None
    early = decide(policy, low, ready(5), left.state, NOW + 39.5)
    assert early.desired == 5
    down = decide(policy, low, ready(5), early.state, NOW + 40.0)
    assert down.desired == 1
    assert down.reason == (
        "concurrency 4 over 60 s at target 4 per replica, below 5 for 30 s (peak 1): 5 -> 1"
    )


# --- rule 4: scale up ---------------------------------------------------------------------


def test_scale_up_waits_for_the_up_delay() -> None:
    policy = ScalePolicy(target=4.0, max_instances=10, scale_up_delay_s=30.0)
    window = window_of(12.0, span=120.0, end=NOW + 40.0)
    first = decide(policy, window, ready(2), at(2), NOW)
    assert first.desired == 2
    assert first.state.above_since == NOW
    assert "wants 3" in first.reason
    names_value_and_target(first, "concurrency 12 over 60 s", "4")
    still = decide(policy, window, ready(2), first.state, NOW + 29.5)
    assert still.desired == 2
    up = decide(policy, window, ready(2), still.state, NOW + 30.0)
    assert up.desired == 3
    assert up.state.above_since is None
    names_value_and_target(up, "concurrency 12 over 60 s", "4")


def test_a_dip_restarts_the_up_delay() -> None:
    policy = ScalePolicy(target=4.0, max_instances=10, scale_up_delay_s=30.0)
    first = decide(policy, window_of(12.0), ready(2), at(2), NOW)
    dip = decide(policy, window_of(8.0, end=NOW + 10), ready(2), first.state, NOW + 10)
    assert dip.state.above_since is None
    again = decide(policy, window_of(12.0, end=NOW + 35), ready(2), dip.state, NOW + 35)
    assert again.desired == 2
    assert again.state.above_since == NOW + 35


def test_scale_up_with_no_delay_is_at_once() -> None:
    policy = ScalePolicy(target=4.0, max_instances=10, panic_threshold=10.0)
    decision = decide(policy, window_of(17.0), ready(2), at(2), NOW)
    assert decision.desired == 5
    names_value_and_target(decision, "concurrency 17 over 60 s", "4")


# --- rule 5: scale down and its guards -----------------------------------------------------


def test_scale_down_waits_for_the_down_delay_and_goes_to_the_highest_recommendation_seen() -> None:
    policy = ScalePolicy(target=4.0, max_instances=10, scale_down_delay_s=300.0)
    state = at(6)
    decision = decide(policy, window_of(12.0, end=NOW), ready(6), state, NOW)
    assert decision.desired == 6
    assert decision.state.below_since == NOW
    assert decision.state.below_peak == 3
    names_value_and_target(decision, "concurrency 12 over 60 s", "4")
    for t, value in ((100.0, 4.0), (200.0, 8.0), (299.5, 4.0)):
        decision = decide(policy, window_of(value, end=NOW + t), ready(6), decision.state, NOW + t)
        assert decision.desired == 6
    assert decision.state.below_peak == 3
    down = decide(policy, window_of(4.0, end=NOW + 300), ready(6), decision.state, NOW + 300)
    assert down.desired == 3
    assert down.kind == "down"
    assert down.reason == (
        "concurrency 4 over 60 s at target 4 per replica, below 6 for 300 s (peak 3): 6 -> 3"
    )


def test_a_recommendation_back_at_the_count_restarts_the_down_delay() -> None:
    policy = ScalePolicy(target=4.0, max_instances=10, scale_down_delay_s=300.0)
    first = decide(policy, window_of(4.0), ready(3), at(3), NOW)
    assert first.state.below_since == NOW
    back = decide(policy, window_of(12.0, end=NOW + 200), ready(3), first.state, NOW + 200)
    assert back.state.below_since is None
    low = decide(policy, window_of(4.0, end=NOW + 400), ready(3), back.state, NOW + 400)
    assert low.desired == 3
    assert low.state.below_since == NOW + 400


@pytest.mark.parametrize(
    ("observed", "state", "words"),
    [
        (ready(3, waiting=2), at(3), "held while 2 requests wait at the gateway"),
        (ready(2, starting=1), at(3), "held while 1 replica starts"),
        (
            ready(3),
            ScaleState(desired=3, awake_since=NOW - 59.5),
            "observed for 59.5 s of its 60 s",
        ),
        (ready(3), at(3, panic_until=NOW + 5.0), "held while panicking"),
    ],
)
def test_guards_hold_a_scale_down_whatever_the_delay_says(
    observed: Observation, state: ScaleState, words: str
) -> None:
    policy = ScalePolicy(target=4.0, max_instances=10, scale_down_delay_s=0.0)
    decision = decide(policy, window_of(4.0), observed, state, NOW)
    assert decision.desired == 3
    assert decision.kind == "hold"
    assert words in decision.reason
    assert decision.state.below_since is None  # the delay counts only once nothing holds
    names_value_and_target(decision, "concurrency 4 over 60 s", "4")


def test_a_full_window_after_waking_the_scale_down_may_start() -> None:
    policy = ScalePolicy(target=4.0, max_instances=10, scale_down_delay_s=0.0)
    state = ScaleState(desired=3, awake_since=NOW - 60.0)
    decision = decide(policy, window_of(4.0), ready(3), state, NOW)
    assert decision.desired == 1


def test_scale_to_zero_after_the_window_is_idle_for_the_down_delay() -> None:
    policy = ScalePolicy(min_instances=0, scale_down_delay_s=300.0)
    idle = window_of(0.0, span=400.0, end=NOW + 300)
    decision = decide(policy, idle, ready(1), at(1), NOW)
    assert decision.desired == 1
    assert decision.state.below_since == NOW
    decision = decide(policy, idle, ready(1), decision.state, NOW + 299.5)
    assert decision.desired == 1
    decision = decide(policy, idle, ready(1), decision.state, NOW + 300)
    assert decision.desired == 0
    assert decision.kind == "idle"
    assert decision.reason == (
        "concurrency 0 over 60 s at target 4 per replica, idle for 300 s: 1 -> 0"
    )


def test_a_trickle_of_load_keeps_one_replica() -> None:
    policy = ScalePolicy(min_instances=0, scale_down_delay_s=0.0)
    window = window_of(0.0)
    window.add(Sample(NOW - 30.0, 1.0))  # one request in flight half a minute ago
    decision = decide(policy, window, ready(1), at(1), NOW)
    assert decision.desired == 1


def test_with_min_one_silence_goes_to_one_not_zero() -> None:
    policy = ScalePolicy(min_instances=1, max_instances=10, scale_down_delay_s=0.0)
    decision = decide(policy, window_of(0.0), ready(4), at(4), NOW)
    assert decision.desired == 1
    names_value_and_target(decision, "concurrency 0 over 60 s", "4")


# --- rule 6: bounds -------------------------------------------------------------------


def test_bounds_clamp_at_once_whatever_the_guards() -> None:
    policy = ScalePolicy(target=4.0, min_instances=1, max_instances=3, scale_down_delay_s=300.0)
    decision = decide(
        policy, window_of(40.0), ready(6, waiting=5), at(6, panic_until=NOW + 30), NOW
    )
    assert decision.desired == 3
    assert decision.kind == "bounds"
    assert decision.reason.startswith("bounds 1..3 (concurrency 40 over 60 s at target 4")
    assert decision.reason.endswith("6 -> 3")


def test_a_raised_minimum_applies_at_once_and_load_above_it_still_waits_its_delay() -> None:
    policy = ScalePolicy(
        target=4.0, min_instances=2, max_instances=10, scale_up_delay_s=30.0, panic_threshold=10.0
    )
    decision = decide(policy, window_of(20.0), ready(1), at(1), NOW)
    assert decision.desired == 2
    assert decision.kind == "bounds"
    names_value_and_target(decision, "concurrency 20 over 60 s", "4")
    # The new count starts the up delay afresh.
    held = decide(policy, window_of(20.0, end=NOW + 1), ready(2), decision.state, NOW + 1)
    assert held.desired == 2
    assert held.state.above_since == NOW + 1
    up = decide(policy, window_of(20.0, end=NOW + 31), ready(2), held.state, NOW + 31)
    assert up.desired == 5


def test_a_recommendation_past_the_maximum_stops_at_it() -> None:
    policy = ScalePolicy(target=4.0, max_instances=4, panic_threshold=100.0)
    decision = decide(policy, window_of(100.0), ready(2), at(2), NOW)
    assert decision.desired == 4
    names_value_and_target(decision, "concurrency 100 over 60 s", "4")


def test_bounds_hold_with_no_data() -> None:
    policy = ScalePolicy(min_instances=2, max_instances=4)
    decision = decide(policy, MetricWindow(60.0), ready(0), at(0), NOW)
    assert decision.desired == 2
    assert decision.kind == "bounds"
    assert "no concurrency samples over 60 s" in decision.reason


# --- rule 7: no data ----------------------------------------------------------------------


def test_no_samples_keep_the_count_and_never_scale_down() -> None:
    policy = ScalePolicy(max_instances=10, scale_down_delay_s=0.0)
    decision = decide(policy, MetricWindow(60.0), ready(5), at(5), NOW)
    assert decision.desired == 5
    assert decision.metric_value is None
    assert decision.kind == "no data"
    assert decision.reason == "no concurrency samples over 60 s: keeps 5"


def test_samples_older_than_the_window_are_no_data() -> None:
    policy = ScalePolicy(max_instances=10, scale_down_delay_s=0.0)
    decision = decide(policy, window_of(0.0, end=NOW - 61), ready(5), at(5), NOW)
    assert decision.desired == 5
    assert decision.metric_value is None


# --- the window and the inputs ------------------------------------------------------------


def test_the_window_drops_samples_older_than_its_span_and_past_its_count() -> None:
    window = MetricWindow(span_s=10.0, max_samples=5)
    for t in (0.0, 1.0, 2.0, 11.0):
        window.add(Sample(t, t))
    assert [s.at for s in window.samples()] == [1.0, 2.0, 11.0]
    window.add(Sample(5.0, 5.0))  # late, kept in order
    assert [s.at for s in window.samples()] == [1.0, 2.0, 5.0, 11.0]
    for t in (12.0, 13.0, 14.0):
        window.add(Sample(t, t))
    assert [s.at for s in window.samples()] == [5.0, 11.0, 12.0, 13.0, 14.0]
    assert window.average(14.0, 2.0) == pytest.approx(13.5)  # (12, 14]: 13 and 14
    assert window.average(100.0, 2.0) is None
    window.clear()
    assert window.samples() == ()


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: ScalePolicy(target=0.0), "target must be above 0, got 0.0"),
        (lambda: ScalePolicy(min_instances=-1), "min_instances must be"),
        (lambda: ScalePolicy(min_instances=5, max_instances=4), "max_instances must be"),
        (lambda: ScalePolicy(scale_down_delay_s=-1.0), "scale_down_delay_s must be 0 or more"),
        (lambda: ScalePolicy(window_s=10.0, panic_window_s=20.0), "panic_window_s must be"),
        (lambda: ScalePolicy(tolerance=1.0), "tolerance must be"),
        (lambda: ScalePolicy(panic_threshold=0.5), "panic_threshold must be"),
        (lambda: Sample(1.0, float("nan")), "value must be a finite number"),
        (lambda: Sample(1.0, -1.0), "value must be a finite number of 0 or more"),
        (lambda: Observation(ready=-1, starting=0, waiting=0), "ready must be"),
        (lambda: ScaleState(desired=-1), "desired must be"),
        (lambda: MetricWindow(span_s=0.0), "span_s must be above 0"),
    ],
)
def test_bad_input_names_the_field_and_what_is_allowed(build: object, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(("most", "wanted"), [(20, 13), (3, 3)])
def test_a_burst_held_at_zero_asks_for_enough_replicas_at_once(most: int, wanted: int) -> None:
    policy = ScalePolicy(target=4, min_instances=0, max_instances=most)
    decision = decide(policy, MetricWindow(60), Observation(0, 0, 50), ScaleState(desired=0), 10)
    assert decision.desired == wanted
    assert decision.reason.startswith("activate: 50 requests waiting"), decision.reason
