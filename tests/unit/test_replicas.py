"""A replica's state, folded from its event log."""

from __future__ import annotations

import pytest

from moorage.models.replicas import FailureReason, ReplicaState, derive_replica
from tests.unit.builders import ReplicaLog, at


def test_replica_without_events_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="r-1"):
        derive_replica("r-1", "ep-1", 1, [])


def test_newly_requested_replica_has_no_address_and_no_failures() -> None:
    replica = ReplicaLog("r-1", "ep-1", revision=3).requested(at(0)).replica()

    assert replica.replica_id == "r-1"
    assert replica.endpoint_id == "ep-1"
    assert replica.revision == 3
    assert replica.state is ReplicaState.REQUESTED
    assert replica.address is None
    assert replica.url is None
    assert replica.consecutive_failures == 0
    assert replica.last_failure is None


def test_started_replica_is_starting_at_the_address_the_runtime_gave() -> None:
    replica = ReplicaLog().requested(at(0)).started(at(1), "127.0.0.1:41234").replica()

    assert replica.state is ReplicaState.STARTING
    assert replica.address == "127.0.0.1:41234"
    assert replica.url == "http://127.0.0.1:41234"


def test_ready_replica_keeps_the_address_it_started_on() -> None:
    replica = ReplicaLog().requested(at(0)).started(at(1), "127.0.0.1:41234").ready(at(5)).replica()

    assert replica.state is ReplicaState.READY
    assert replica.address == "127.0.0.1:41234"


def test_state_since_is_the_last_event_and_requested_at_the_first() -> None:
    replica = ReplicaLog().requested(at(0)).started(at(1)).ready(at(7)).replica()

    assert replica.state_since == at(7)
    assert replica.requested_at == at(0)


def test_failed_replica_loses_its_address_and_records_why() -> None:
    replica = (
        ReplicaLog()
        .requested(at(0))
        .started(at(1))
        .failed(at(2), FailureReason.EXITED, "exited with code 3; last output: OOM")
        .replica()
    )

    assert replica.state is ReplicaState.FAILED
    assert replica.address is None
    assert replica.consecutive_failures == 1
    assert replica.last_failure == "exited with code 3; last output: OOM"
    assert replica.last_failure_reason is FailureReason.EXITED
    assert replica.state_since == at(2)


def test_failures_accumulate_across_restarts_and_the_latest_one_is_reported() -> None:
    log = ReplicaLog().requested(at(0))
    log.started(at(1)).failed(at(2), FailureReason.EXITED, "exited with code 1")
    log.started(at(4)).failed(at(5), FailureReason.NOT_READY, "no HTTP answer")
    log.started(at(9), "127.0.0.1:5000")

    replica = log.replica()

    assert replica.state is ReplicaState.STARTING
    assert replica.address == "127.0.0.1:5000"
    assert replica.consecutive_failures == 2
    assert replica.last_failure == "no HTTP answer"
    assert replica.last_failure_reason is FailureReason.NOT_READY


def test_becoming_ready_clears_the_failure_record() -> None:
    log = ReplicaLog().requested(at(0))
    log.started(at(1)).failed(at(2)).started(at(4)).failed(at(5))
    log.started(at(9)).ready(at(10))

    replica = log.replica()

    assert replica.consecutive_failures == 0
    assert replica.last_failure is None
    assert replica.last_failure_reason is None


def test_failures_after_ready_count_from_zero_again() -> None:
    log = ReplicaLog().requested(at(0))
    log.started(at(1)).failed(at(2)).started(at(4)).failed(at(5))
    log.started(at(9)).ready(at(10)).failed(at(100), FailureReason.EXITED, "killed")

    replica = log.replica()

    assert replica.consecutive_failures == 1
    assert replica.last_failure == "killed"


def test_start_error_before_any_start_counts_as_a_failure() -> None:
    replica = (
        ReplicaLog()
        .requested(at(0))
        .failed(at(0), FailureReason.START_ERROR, "image not found")
        .replica()
    )

    assert replica.state is ReplicaState.FAILED
    assert replica.consecutive_failures == 1
    assert replica.last_failure_reason is FailureReason.START_ERROR


def test_stopped_replica_has_no_address_and_is_not_live() -> None:
    replica = ReplicaLog().requested(at(0)).started(at(1)).ready(at(2)).stopped(at(3)).replica()

    assert replica.state is ReplicaState.STOPPED
    assert replica.address is None
    assert replica.url is None
    assert not replica.state.is_live


@pytest.mark.parametrize(
    ("state", "live", "has_process"),
    [
        (ReplicaState.REQUESTED, True, False),
        (ReplicaState.STARTING, True, True),
        (ReplicaState.READY, True, True),
        (ReplicaState.FAILED, True, False),
        (ReplicaState.STOPPED, False, False),
    ],
)
def test_which_states_belong_to_the_endpoint_and_which_need_a_process(
    state: ReplicaState, live: bool, has_process: bool
) -> None:
    assert state.is_live is live
    assert state.has_process is has_process


@pytest.mark.parametrize(
    ("reason", "needs_user"),
    [
        (FailureReason.START_ERROR, True),
        (FailureReason.NOT_READY, True),
        (FailureReason.EXITED, False),
    ],
)
def test_which_failures_retrying_alone_cannot_fix(reason: FailureReason, needs_user: bool) -> None:
    assert reason.needs_user is needs_user
