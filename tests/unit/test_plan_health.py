"""Readiness probes after a replica is ready, and rolling back a revision that cannot run."""

from __future__ import annotations

import dataclasses

from moorage.controller.plan import (
    MarkFailed,
    MarkReady,
    MarkUnready,
    PlanPolicy,
    RollBack,
    StopReplica,
    due_for_probe,
    plan,
)
from moorage.models.endpoints import ReadinessProbe
from moorage.models.replicas import FailureReason, ReplicaState
from tests.unit.builders import (
    T0,
    all_running,
    at,
    failing_replica,
    make_endpoint,
    make_replica,
    of_type,
)

POLICY = PlanPolicy(crash_loop_threshold=3)
PROBE = ReadinessProbe(path="/health", initial_delay_s=5, period_s=2, failure_threshold=3)


def test_a_ready_replica_that_fails_a_probe_leaves_rotation() -> None:
    endpoint = make_endpoint()
    replica = make_replica("r-1")

    actions = plan([endpoint], [replica], all_running([replica]), {"r-1": False}, at(1), POLICY)

    assert actions == [MarkUnready(replica)]


def test_an_unready_replica_that_passes_again_rejoins() -> None:
    endpoint = make_endpoint()
    replica = make_replica("r-1", state=ReplicaState.UNREADY)

    actions = plan([endpoint], [replica], all_running([replica]), {"r-1": True}, at(1), POLICY)

    assert actions == [MarkReady(replica)]


def test_an_unready_replica_is_replaced_after_the_failure_threshold() -> None:
    endpoint = make_endpoint()
    replica = make_replica("r-1", state=ReplicaState.UNREADY)
    observed = all_running([replica])

    below = plan([endpoint], [replica], observed, {"r-1": False}, at(1), POLICY, {"r-1": 2})
    at_threshold = plan([endpoint], [replica], observed, {"r-1": False}, at(2), POLICY, {"r-1": 3})

    assert below == []
    failed = of_type(at_threshold, MarkFailed)
    assert [f.reason for f in failed] == [FailureReason.UNHEALTHY]
    assert "3 readiness probes" in failed[0].detail


def test_an_unhealthy_replacement_is_not_a_reason_to_call_the_endpoint_broken() -> None:
    assert not FailureReason.UNHEALTHY.needs_user
    assert FailureReason.NOT_READY.needs_user


def test_a_starting_replica_is_not_probed_before_its_initial_delay() -> None:
    starting = make_replica("r-1", state=ReplicaState.STARTING, since=T0)

    assert not due_for_probe(starting, PROBE, None, at(4))
    assert due_for_probe(starting, PROBE, None, at(5))


def test_probes_repeat_every_period() -> None:
    ready = make_replica("r-1")

    assert not due_for_probe(ready, PROBE, at(10), at(11))
    assert due_for_probe(ready, PROBE, at(10), at(12))
    assert not due_for_probe(make_replica("r-2", state=ReplicaState.FAILED), PROBE, None, at(99))


def test_a_new_revision_that_crash_loops_is_rolled_back_to_the_serving_one() -> None:
    endpoint = make_endpoint(revision=2)
    old = make_replica("r-old", revision=1)
    new = failing_replica("r-new", revision=2, failures=3, detail="exited with code 4")

    actions = plan([endpoint], [old, new], all_running([old]), {}, at(1), POLICY)

    rollbacks = of_type(actions, RollBack)
    assert rollbacks == [RollBack(endpoint, 1, rollbacks[0].reason)]
    assert "exited with code 4" in rollbacks[0].reason
    assert of_type(actions, StopReplica) == []  # the old revision keeps serving


def test_a_new_revision_that_never_answers_is_rolled_back_after_one_failure() -> None:
    endpoint = make_endpoint(revision=2)
    old = make_replica("r-old", revision=1)
    new = failing_replica("r-new", revision=2, failures=1, reason=FailureReason.NOT_READY)

    actions = plan([endpoint], [old, new], all_running([old]), {}, at(1), POLICY)

    assert [a.to_revision for a in of_type(actions, RollBack)] == [1]


def test_one_crash_of_a_new_revision_is_retried_not_rolled_back() -> None:
    endpoint = make_endpoint(revision=2)
    old = make_replica("r-old", revision=1)
    new = failing_replica("r-new", revision=2, failures=1)

    actions = plan([endpoint], [old, new], all_running([old]), {}, at(1), POLICY)

    assert of_type(actions, RollBack) == []


def test_nothing_to_roll_back_to_without_a_serving_older_revision() -> None:
    endpoint = make_endpoint(revision=2)
    old = make_replica("r-old", revision=1, state=ReplicaState.FAILED)
    new = failing_replica("r-new", revision=2, failures=5)

    actions = plan([endpoint], [old, new], all_running([]), {}, at(1), POLICY)

    assert of_type(actions, RollBack) == []


def test_a_stopped_endpoint_is_never_rolled_back() -> None:
    endpoint = dataclasses.replace(make_endpoint(revision=2), target_instance_number=0)
    old = make_replica("r-old", revision=1)
    new = failing_replica("r-new", revision=2, failures=5)

    actions = plan([endpoint], [old, new], all_running([old]), {}, at(1), POLICY)

    assert of_type(actions, RollBack) == []
