"""The status a user sees for an endpoint, derived from its replicas."""

from __future__ import annotations

import pytest

from moorage.models.endpoints import DesiredState, EndpointStatus
from moorage.models.replicas import FailureReason, ReplicaState
from moorage.models.status import DerivedStatus, StatusPolicy, derive_status
from tests.unit.builders import ReplicaLog, at, failing_replica, make_endpoint, make_replica

POLICY = StatusPolicy()


def test_stopped_endpoint_is_stopped_even_while_replicas_still_serve() -> None:
    endpoint = make_endpoint(target=1, desired_state=DesiredState.STOPPED)

    status = derive_status(endpoint, [make_replica("r-1")], POLICY)

    assert status == DerivedStatus(EndpointStatus.STOPPED)


def test_deleted_endpoint_reports_stopped_not_initializing() -> None:
    endpoint = make_endpoint(target=1, deleted_at=at(10))

    status = derive_status(endpoint, [], POLICY)

    assert status == DerivedStatus(EndpointStatus.STOPPED)


def test_stopped_endpoint_is_stopped_even_when_its_replicas_crash_loop() -> None:
    endpoint = make_endpoint(target=1, desired_state=DesiredState.STOPPED)

    status = derive_status(endpoint, [failing_replica("r-1", failures=10)], POLICY)

    assert status == DerivedStatus(EndpointStatus.STOPPED)


def test_endpoint_with_no_replicas_yet_is_initializing() -> None:
    status = derive_status(make_endpoint(target=1), [], POLICY)

    assert status == DerivedStatus(EndpointStatus.INITIALIZING)


def test_endpoint_is_available_once_target_replicas_are_ready() -> None:
    endpoint = make_endpoint(target=2)
    replicas = [make_replica("r-1"), make_replica("r-2")]

    assert derive_status(endpoint, replicas, POLICY) == DerivedStatus(EndpointStatus.AVAILABLE)


def test_endpoint_is_initializing_while_fewer_than_target_replicas_are_ready() -> None:
    endpoint = make_endpoint(target=2)
    replicas = [make_replica("r-1"), make_replica("r-2", state=ReplicaState.STARTING)]

    assert derive_status(endpoint, replicas, POLICY).status is EndpointStatus.INITIALIZING


def test_ready_replicas_of_an_older_revision_do_not_make_the_endpoint_available() -> None:
    endpoint = make_endpoint(target=1, revision=2)
    replicas = [
        make_replica("old", revision=1),
        make_replica("new", revision=2, state=ReplicaState.STARTING),
    ]

    assert derive_status(endpoint, replicas, POLICY).status is EndpointStatus.INITIALIZING


def test_ready_target_wins_over_an_extra_replica_that_fails() -> None:
    endpoint = make_endpoint(target=1)
    replicas = [
        make_replica("r-1"),
        failing_replica("r-2", failures=5, reason=FailureReason.START_ERROR),
    ]

    assert derive_status(endpoint, replicas, POLICY) == DerivedStatus(EndpointStatus.AVAILABLE)


def test_replica_failing_fewer_times_than_the_threshold_is_still_initializing() -> None:
    endpoint = make_endpoint(target=1)
    failures = POLICY.crash_loop_threshold - 1

    status = derive_status(endpoint, [failing_replica("r-1", failures=failures)], POLICY)

    assert status.status is EndpointStatus.INITIALIZING
    assert status.status_info is not None
    assert "failed and is restarted" in status.status_info


@pytest.mark.parametrize("state", [ReplicaState.FAILED, ReplicaState.STARTING])
def test_crash_loop_makes_the_endpoint_unavailable_with_what_to_fix(state: ReplicaState) -> None:
    """Counted while the replica waits for its next try, and during the try too."""
    endpoint = make_endpoint(target=1)
    replica = failing_replica(
        "r-1",
        failures=POLICY.crash_loop_threshold,
        state=state,
        detail="exited with code 1; last output: ModuleNotFoundError: No module named 'app'",
    )

    status = derive_status(endpoint, [replica], POLICY)

    assert status.status is EndpointStatus.UNAVAILABLE
    assert status.status_info is not None
    assert "r-1" in status.status_info
    assert f"failed {POLICY.crash_loop_threshold} time(s) in a row" in status.status_info
    assert "ModuleNotFoundError: No module named 'app'" in status.status_info
    assert "deploy_metadata" in status.status_info


@pytest.mark.parametrize("reason", [FailureReason.START_ERROR, FailureReason.NOT_READY])
def test_one_failure_that_retrying_cannot_fix_makes_the_endpoint_unavailable(
    reason: FailureReason,
) -> None:
    endpoint = make_endpoint(target=1)
    replica = failing_replica("r-1", failures=1, reason=reason, detail="no image 'nope:latest'")

    status = derive_status(endpoint, [replica], POLICY)

    assert status.status is EndpointStatus.UNAVAILABLE
    assert status.status_info is not None
    assert "no image 'nope:latest'" in status.status_info


def test_one_plain_crash_is_not_enough_to_call_the_endpoint_unavailable() -> None:
    endpoint = make_endpoint(target=1)
    replica = failing_replica("r-1", failures=1, reason=FailureReason.EXITED)

    assert derive_status(endpoint, [replica], POLICY).status is EndpointStatus.INITIALIZING


def test_crash_loop_threshold_comes_from_the_policy() -> None:
    endpoint = make_endpoint(target=1)
    replica = failing_replica("r-1", failures=1, reason=FailureReason.EXITED)

    status = derive_status(endpoint, [replica], StatusPolicy(crash_loop_threshold=1))

    assert status.status is EndpointStatus.UNAVAILABLE


def test_status_info_counts_failing_replicas_and_names_the_worst() -> None:
    endpoint = make_endpoint(target=3)
    replicas = [
        make_replica("fine"),
        failing_replica("bad", failures=3, detail="exited with code 2"),
        failing_replica("worse", failures=7, detail="exited with code 139"),
    ]

    status = derive_status(endpoint, replicas, POLICY)

    assert status.status_info is not None
    assert status.status_info.startswith("2 of 3 replicas cannot run")
    assert "replica worse failed 7 time(s)" in status.status_info
    assert "exited with code 139" in status.status_info


def test_failures_of_an_older_revision_do_not_make_the_new_one_unavailable() -> None:
    endpoint = make_endpoint(target=1, revision=2)
    replicas = [
        failing_replica("old", failures=9, revision=1, reason=FailureReason.START_ERROR),
        make_replica("new", revision=2, state=ReplicaState.STARTING),
    ]

    assert derive_status(endpoint, replicas, POLICY).status is EndpointStatus.INITIALIZING


def test_a_stopped_replica_that_had_crash_looped_no_longer_counts() -> None:
    endpoint = make_endpoint(target=1)
    log = ReplicaLog("gone").requested(at(0))
    for n in range(5):
        log.started(at(10 * n + 1)).failed(at(10 * n + 2))
    log.stopped(at(60))

    status = derive_status(endpoint, [log.replica()], POLICY)

    assert status.status is EndpointStatus.INITIALIZING


def test_becoming_ready_resets_the_crash_loop_count() -> None:
    """Two crashes after a day of serving are not a crash loop, even after three crashes
    on the way up."""
    endpoint = make_endpoint(target=2)
    flaky = ReplicaLog("flaky").requested(at(0))
    for n in range(3):
        flaky.started(at(10 * n + 1)).failed(at(10 * n + 2))
    flaky.started(at(40)).ready(at(45))
    flaky.failed(at(86_400)).started(at(86_401)).failed(at(86_402))
    other = make_replica("other", state=ReplicaState.STARTING)

    status = derive_status(endpoint, [flaky.replica(), other], POLICY)

    assert flaky.replica().consecutive_failures == 2
    assert status.status is EndpointStatus.INITIALIZING
    assert status.status_info == "replica flaky failed and is restarted: exited with code 1"


def test_same_crashes_without_a_ready_in_between_are_a_crash_loop() -> None:
    endpoint = make_endpoint(target=2)
    flaky = ReplicaLog("flaky").requested(at(0))
    for n in range(3):
        flaky.started(at(10 * n + 1)).failed(at(10 * n + 2))
    other = make_replica("other", state=ReplicaState.STARTING)

    status = derive_status(endpoint, [flaky.replica(), other], POLICY)

    assert status.status is EndpointStatus.UNAVAILABLE
