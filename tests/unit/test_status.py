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
    assert f"failed {POLICY.crash_loop_threshold} times in a row" in status.status_info
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

    assert status.status is EndpointStatus.AVAILABLE  # "fine" still serves
    assert status.status_info is not None
    assert status.status_info.startswith("1 of 3 replicas serves; 2 cannot run")
    assert "replica worse failed 7 times" in status.status_info
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


def test_an_endpoint_that_still_serves_is_available_naming_the_replica_that_cannot_run() -> None:
    """One replica serves through the gateway; the other cannot start (a deleted secret)."""
    endpoint = make_endpoint(target=2)
    deleted = (
        "deploy_metadata.secrets: you have no secret named HF_TOKEN (deleted?); "
        "store it again with PUT /v1/secrets/HF_TOKEN"
    )
    replicas = [
        make_replica("serving"),
        failing_replica("broken", failures=1, reason=FailureReason.START_ERROR, detail=deleted),
    ]

    status = derive_status(endpoint, replicas, POLICY, at(60))

    assert status.status is EndpointStatus.AVAILABLE
    assert status.status_info is not None
    assert status.status_info.startswith(
        "1 of 2 replicas serves; 1 cannot run: replica broken failed 1 time in a row, last: "
        f"{deleted}."
    ), status.status_info


def test_nothing_serving_and_a_replica_that_cannot_run_is_unavailable() -> None:
    endpoint = make_endpoint(target=2)
    replicas = [
        make_replica("slow", state=ReplicaState.STARTING),
        failing_replica("broken", failures=1, reason=FailureReason.START_ERROR),
    ]

    status = derive_status(endpoint, replicas, POLICY)

    assert status.status is EndpointStatus.UNAVAILABLE
    assert status.status_info is not None
    assert status.status_info.startswith("1 of 2 replicas cannot run: replica broken failed 1 time")


def test_a_replica_that_never_started_is_not_sent_to_its_logs() -> None:
    """An image that cannot be pulled, or a runtime that refuses the replica: there are
    no logs, and the message already says what to check."""
    endpoint = make_endpoint(target=1)
    pull = (
        "cannot pull image 'nope:latest': not found; check deploy_metadata.image_url and "
        "that the engine can reach its registry"
    )
    replica = failing_replica("r-1", failures=1, reason=FailureReason.START_ERROR, detail=pull)

    info = derive_status(endpoint, [replica], POLICY).status_info or ""

    assert pull in info
    assert "logs" not in info.replace("no logs", ""), info
    assert "command, port" not in info, info
    assert "never started, so it has no logs: fix what the message names" in info


def test_an_app_that_never_answered_is_sent_to_its_logs_not_to_its_command() -> None:
    endpoint = make_endpoint(target=1)
    slow = (
        "no HTTP answer on the app's port within 900 s; check that the command starts a "
        "server listening on $PORT, or raise readiness_probe.startup_timeout_s"
    )
    replica = failing_replica("r-1", failures=1, reason=FailureReason.NOT_READY, detail=slow)

    info = derive_status(endpoint, [replica], POLICY).status_info or ""

    assert info.count("startup_timeout_s") == 1, info
    assert "The replica logs (GET /v1/inference-service/{id}/logs; `moorage logs`) show" in info, (
        info
    )
    assert "Check deploy_metadata (command, port)" not in info


def test_a_crash_loop_is_sent_to_its_command_and_its_logs() -> None:
    endpoint = make_endpoint(target=1)
    replica = failing_replica("r-1", failures=POLICY.crash_loop_threshold)

    info = derive_status(endpoint, [replica], POLICY).status_info or ""

    assert "Check deploy_metadata (command, port) and the replica logs" in info, info


def test_counts_agree_with_their_nouns() -> None:
    one = derive_status(make_endpoint(target=1), [failing_replica("r-1", failures=3)], POLICY)
    three = derive_status(make_endpoint(target=3), [failing_replica("r-1", failures=3)], POLICY)

    assert (one.status_info or "").startswith("1 of 1 replica cannot run"), one
    assert "failed 3 times in a row" in (one.status_info or "")
    assert (three.status_info or "").startswith("1 of 3 replicas cannot run"), three
    assert "(s)" not in (one.status_info or "") + (three.status_info or "")
