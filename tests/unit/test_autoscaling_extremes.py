"""Extreme but accepted policies never break a decision: demand over the smallest
target asks for the most replicas the bounds allow, not for an overflow."""

from __future__ import annotations

import pytest

from moorage.models.autoscaling import (
    MetricWindow,
    Observation,
    Sample,
    ScaleMetric,
    ScalePolicy,
    ScaleState,
    decide,
)


@pytest.mark.parametrize("metric", list(ScaleMetric))
@pytest.mark.parametrize("target", [5e-324, 1e-300, 0.01])
def test_demand_over_a_tiny_target_asks_for_the_maximum(metric: ScaleMetric, target: float) -> None:
    policy = ScalePolicy(metric=metric, target=target, min_instances=0, max_instances=7)
    window = MetricWindow(60)
    for tick in range(10):
        window.add(Sample(tick * 0.5, 1e300))

    decision = decide(policy, window, Observation(1, 0, 0), ScaleState(desired=1), 5.0)

    assert decision.desired == 7
