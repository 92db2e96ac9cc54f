"""The controller's decisions: what ``plan`` asks for, given what is wanted, recorded and seen."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import pytest

from moorage.clock import FakeClock
from moorage.controller.plan import (
    Action,
    AdoptReplica,
    CreateReplica,
    MarkFailed,
    MarkReady,
    PlanPolicy,
    ReapOrphan,
    StartReplica,
    StopReplica,
    plan,
)
from moorage.models.autoscaling import ScalePolicy
from moorage.models.endpoints import DesiredState, Endpoint
from moorage.models.replicas import FailureReason, Replica, ReplicaState
from moorage.runtimes.base import Observed
from tests.unit.builders import (
    T0,
    ReplicaLog,
    all_running,
    at,
    exited,
    failing_replica,
    make_endpoint,
    make_replica,
    observing,
    of_type,
    running,
)

POLICY = PlanPolicy()


def run_plan(
    endpoints: Sequence[Endpoint],
    replicas: Sequence[Replica],
    *,
    observed: Mapping[str, Observed] | None = None,
    probes: Mapping[str, bool] | None = None,
    now: datetime = T0,
    policy: PlanPolicy = POLICY,
) -> list[Action]:
    """``plan`` where, unless a test says otherwise, every process that should run does."""
    return plan(
        endpoints,
        replicas,
        all_running(replicas) if observed is None else observed,
        probes or {},
        now,
        policy,
    )


def stopped_ids(actions: Sequence[Action]) -> list[str]:
    return [a.replica.replica_id for a in of_type(actions, StopReplica)]


def started_ids(actions: Sequence[Action]) -> list[str]:
    return [a.replica.replica_id for a in of_type(actions, StartReplica)]


# -- creating and starting ---------------------------------------------------


def test_new_endpoint_gets_one_replica_created_per_target_instance() -> None:
    endpoint = make_endpoint(target=3)

    actions = run_plan([endpoint], [])

    assert actions == [CreateReplica(endpoint)] * 3


def test_only_the_missing_replicas_are_created() -> None:
    endpoint = make_endpoint(target=3)
    serving = make_replica("r-1", state=ReplicaState.READY)

    actions = run_plan([endpoint], [serving])

    assert actions == [CreateReplica(endpoint)] * 2


def test_endpoint_at_target_with_every_replica_ready_needs_nothing() -> None:
    endpoint = make_endpoint(target=2)
    replicas = [make_replica("r-1"), make_replica("r-2")]

    assert run_plan([endpoint], replicas) == []


def test_replicas_of_another_endpoint_do_not_count_toward_the_target() -> None:
    wanted = make_endpoint("ep-1", target=1)
    other = make_endpoint("ep-2", target=1)
    others_replica = make_replica("r-2", endpoint_id="ep-2")

    actions = run_plan([wanted, other], [others_replica])

    assert actions == [CreateReplica(wanted)]


def test_requested_replica_is_started() -> None:
    endpoint = make_endpoint()
    requested = make_replica("r-1", state=ReplicaState.REQUESTED)

    actions = run_plan([endpoint], [requested], observed={})

    assert actions == [StartReplica(endpoint, requested)]


def test_failed_replica_is_retried_rather_than_replaced() -> None:
    endpoint = make_endpoint(target=1)
    in_backoff = failing_replica("r-1", failures=1, since=T0)

    actions = run_plan([endpoint], [in_backoff], now=at(0.5))

    assert actions == []


# -- readiness -----------------------------------------------------------------


def test_starting_replica_is_marked_ready_when_its_probe_passes() -> None:
    endpoint = make_endpoint()
    starting = make_replica("r-1", state=ReplicaState.STARTING)

    actions = run_plan([endpoint], [starting], probes={"r-1": True}, now=at(5))

    assert actions == [MarkReady(starting)]


@pytest.mark.parametrize("probes", [{"r-1": False}, {}], ids=["probe-fails", "not-probed"])
def test_starting_replica_waits_while_its_app_does_not_answer(probes: dict[str, bool]) -> None:
    endpoint = make_endpoint()
    starting = make_replica("r-1", state=ReplicaState.STARTING, since=T0)

    actions = run_plan([endpoint], [starting], probes=probes, now=at(POLICY.ready_timeout_s))

    assert actions == []


def test_starting_replica_fails_not_ready_once_ready_timeout_has_passed(
    fake_clock: FakeClock,
) -> None:
    policy = PlanPolicy(ready_timeout_s=60)
    endpoint = make_endpoint()
    starting = make_replica("r-1", state=ReplicaState.STARTING, since=fake_clock.now())
    probes = {"r-1": False}

    fake_clock.advance(60)
    at_deadline = run_plan(
        [endpoint], [starting], probes=probes, now=fake_clock.now(), policy=policy
    )
    fake_clock.advance(0.5)
    past_deadline = run_plan(
        [endpoint], [starting], probes=probes, now=fake_clock.now(), policy=policy
    )

    assert at_deadline == []
    [failure] = of_type(past_deadline, MarkFailed)
    assert failure.replica == starting
    assert failure.reason is FailureReason.NOT_READY
    assert "60 s" in failure.detail
    assert "$PORT" in failure.detail


def test_replica_whose_app_answers_after_the_timeout_is_ready_not_failed() -> None:
    """The probe result of this pass wins: killing an app that just came up helps nobody."""
    endpoint = make_endpoint()
    starting = make_replica("r-1", state=ReplicaState.STARTING, since=T0)

    actions = run_plan(
        [endpoint], [starting], probes={"r-1": True}, now=at(POLICY.ready_timeout_s + 30)
    )

    assert actions == [MarkReady(starting)]


def test_not_ready_replica_is_not_restarted_in_the_pass_it_fails() -> None:
    endpoint = make_endpoint()
    starting = make_replica("r-1", state=ReplicaState.STARTING, since=T0)

    actions = run_plan([endpoint], [starting], now=at(POLICY.ready_timeout_s + 1))

    assert [type(a) for a in actions] == [MarkFailed]


# -- failures ------------------------------------------------------------------


@pytest.mark.parametrize("state", [ReplicaState.STARTING, ReplicaState.READY])
def test_replica_whose_process_exited_is_marked_failed_with_exit_code_and_output(
    state: ReplicaState,
) -> None:
    endpoint = make_endpoint()
    replica = make_replica("r-1", state=state)
    tail = "ModuleNotFoundError: No module named 'vllm'"

    actions = run_plan(
        [endpoint], [replica], observed=observing(exited(replica, exit_code=137, output_tail=tail))
    )

    [failure] = of_type(actions, MarkFailed)
    assert failure.replica == replica
    assert failure.reason is FailureReason.EXITED
    assert "137" in failure.detail
    assert tail in failure.detail


def test_replica_the_runtime_no_longer_knows_is_marked_failed_as_gone() -> None:
    endpoint = make_endpoint()
    ready = make_replica("r-1", state=ReplicaState.READY)

    actions = run_plan([endpoint], [ready], observed={})

    assert actions == [
        MarkFailed(ready, FailureReason.EXITED, "the replica's process is gone"),
    ]


def test_exit_without_code_or_output_is_still_reported_as_an_exit() -> None:
    endpoint = make_endpoint()
    ready = make_replica("r-1", state=ReplicaState.READY)

    actions = run_plan(
        [endpoint], [ready], observed=observing(exited(ready, exit_code=None, output_tail=None))
    )

    assert actions == [MarkFailed(ready, FailureReason.EXITED, "exited")]


def test_crashed_replica_is_not_restarted_in_the_pass_it_is_found_dead() -> None:
    endpoint = make_endpoint()
    ready = make_replica("r-1", state=ReplicaState.READY)

    actions = run_plan([endpoint], [ready], observed=observing(exited(ready)))

    assert [type(a) for a in actions] == [MarkFailed]


@pytest.mark.parametrize(
    ("failures", "backoff_s"),
    [(1, 1), (2, 2), (3, 4), (4, 8), (6, 32), (7, 60), (12, 60)],
)
def test_failed_replica_restarts_only_after_its_exponential_backoff(
    fake_clock: FakeClock, failures: int, backoff_s: float
) -> None:
    endpoint = make_endpoint()
    failed = failing_replica("r-1", failures=failures, since=fake_clock.now())

    fake_clock.advance(backoff_s - 0.001)
    too_early = run_plan([endpoint], [failed], observed={}, now=fake_clock.now())
    fake_clock.advance(0.001)
    on_time = run_plan([endpoint], [failed], observed={}, now=fake_clock.now())

    assert too_early == []
    assert on_time == [StartReplica(endpoint, failed)]


@pytest.mark.parametrize(("failures", "backoff_s"), [(1, 5), (2, 10), (3, 20), (4, 30), (9, 30)])
def test_backoff_follows_the_configured_base_and_cap(failures: int, backoff_s: float) -> None:
    policy = PlanPolicy(backoff_base_s=5, backoff_max_s=30)

    assert policy.backoff(failures) == timedelta(seconds=backoff_s)


def test_crash_looping_replica_is_restarted_with_doubling_backoff(fake_clock: FakeClock) -> None:
    """Several passes against an app that dies at once, recording what the controller asks for
    the way the reconciler does."""
    policy = PlanPolicy(backoff_base_s=1, backoff_max_s=8)
    endpoint = make_endpoint()
    log = ReplicaLog("r-1").requested(fake_clock.now())
    starts: list[datetime] = []
    failures: list[datetime] = []

    for _ in range(400):  # 100 s in passes of 0.25 s
        now = fake_clock.now()
        replica = log.replica()
        observed = (
            observing(exited(replica, output_tail="boom")) if replica.state.has_process else {}
        )
        for action in plan([endpoint], [replica], observed, {}, now, policy):
            if isinstance(action, StartReplica):
                log.started(now)
                starts.append(now)
            elif isinstance(action, MarkFailed):
                log.failed(now, action.reason, action.detail)
                failures.append(now)
            else:
                pytest.fail(f"unexpected action {action}")
        fake_clock.advance(0.25)

    waits = [
        (start - failure).total_seconds()
        for failure, start in zip(failures, starts[1:], strict=False)
    ]
    assert waits[:7] == [1, 2, 4, 8, 8, 8, 8]
    assert log.replica().consecutive_failures == len(failures)


def test_backoff_stays_capped_however_long_a_replica_has_crash_looped() -> None:
    endpoint = make_endpoint()
    failed = failing_replica("r-1", failures=1100, since=T0)

    actions = run_plan([endpoint], [failed], observed={}, now=at(POLICY.backoff_max_s))

    assert actions == [StartReplica(endpoint, failed)]


# -- scaling down ----------------------------------------------------------------


def test_scale_down_stops_non_ready_replicas_before_ready_ones() -> None:
    endpoint = make_endpoint(target=2)
    oldest_ready = make_replica("ready-old", state=ReplicaState.READY, since=at(0))
    newest_ready = make_replica("ready-new", state=ReplicaState.READY, since=at(30))
    starting = make_replica("starting", state=ReplicaState.STARTING, since=at(10))
    failed = failing_replica("failed", failures=1, since=at(5))

    actions = run_plan([endpoint], [oldest_ready, newest_ready, starting, failed], now=at(40))

    assert sorted(stopped_ids(actions)) == ["failed", "starting"]
    assert all(a.why == "scaled down" for a in of_type(actions, StopReplica))
    assert of_type(actions, StartReplica) == []


def test_an_endpoint_scaled_to_zero_stops_its_replica_saying_so() -> None:
    endpoint = dataclasses.replace(
        make_endpoint(target=0), scale_policy=ScalePolicy(min_instances=0)
    )
    stopped_too = make_endpoint("ep-2", target=1, desired_state=DesiredState.STOPPED)
    replicas = [
        make_replica("idle", state=ReplicaState.READY),
        make_replica("other", endpoint_id="ep-2"),
    ]

    actions = run_plan([endpoint, stopped_too], replicas, now=at(60))

    why = {a.replica.replica_id: a.why for a in of_type(actions, StopReplica)}
    assert why == {"idle": "scaled to zero: idle", "other": "the endpoint was stopped or deleted"}


def test_scale_down_stops_the_newest_replicas_first_among_equally_ready() -> None:
    endpoint = make_endpoint(target=1)
    replicas = [
        make_replica("first", requested_at=at(0), since=at(50)),
        make_replica("second", requested_at=at(10), since=at(40)),
        make_replica("third", requested_at=at(20), since=at(30)),
    ]

    actions = run_plan([endpoint], replicas, now=at(60))

    assert stopped_ids(actions) == ["third", "second"]


def test_scale_down_judges_readiness_by_what_this_pass_observed() -> None:
    endpoint = make_endpoint(target=1)
    crashed = make_replica("crashed", state=ReplicaState.READY, requested_at=at(0))
    coming_up = make_replica("coming-up", state=ReplicaState.STARTING, requested_at=at(10))

    actions = run_plan(
        [endpoint],
        [crashed, coming_up],
        observed=observing(exited(crashed), running(coming_up)),
        probes={"coming-up": True},
        now=at(20),
    )

    assert stopped_ids(actions) == ["crashed"]
    assert MarkReady(coming_up) in actions


def test_extra_requested_replica_is_stopped_instead_of_started() -> None:
    endpoint = make_endpoint(target=1)
    older = make_replica("older", state=ReplicaState.REQUESTED, since=at(0))
    newer = make_replica("newer", state=ReplicaState.REQUESTED, since=at(1))

    actions = run_plan([endpoint], [older, newer], observed={}, now=at(2))

    assert started_ids(actions) == ["older"]
    assert stopped_ids(actions) == ["newer"]
    assert of_type(actions, CreateReplica) == []


# -- stopping and deleting -------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        make_endpoint(target=2, revision=2, desired_state=DesiredState.STOPPED),
        make_endpoint(target=2, revision=2, deleted_at=at(100)),
    ],
    ids=["stopped", "deleted"],
)
def test_stopped_or_deleted_endpoint_stops_every_replica_and_starts_none(
    endpoint: Endpoint,
) -> None:
    replicas = [
        make_replica("ready", revision=2),
        make_replica("starting", revision=2, state=ReplicaState.STARTING),
        make_replica("requested", revision=2, state=ReplicaState.REQUESTED),
        failing_replica("failed", failures=1, revision=2, since=T0),
        make_replica("old-ready", revision=1),
    ]

    actions = run_plan([endpoint], replicas, now=at(3600))

    assert sorted(stopped_ids(actions)) == sorted(r.replica_id for r in replicas)
    assert of_type(actions, CreateReplica) == []
    assert of_type(actions, StartReplica) == []


def test_stopped_endpoint_without_replicas_needs_nothing() -> None:
    endpoint = make_endpoint(target=3, desired_state=DesiredState.STOPPED)

    assert run_plan([endpoint], []) == []


# -- rolling to a new revision ---------------------------------------------------


def test_new_revision_replicas_are_created_beside_the_serving_old_ones() -> None:
    endpoint = make_endpoint(target=2, revision=2)
    old = [make_replica("old-1", revision=1), make_replica("old-2", revision=1)]

    actions = run_plan([endpoint], old)

    assert actions == [CreateReplica(endpoint)] * 2


def test_old_revision_keeps_serving_until_the_new_revision_is_fully_ready() -> None:
    endpoint = make_endpoint(target=2, revision=2)
    replicas = [
        make_replica("old-1", revision=1),
        make_replica("old-2", revision=1),
        make_replica("new-1", revision=2),
        make_replica("new-2", revision=2, state=ReplicaState.STARTING),
    ]

    actions = run_plan([endpoint], replicas, probes={"new-2": False}, now=at(10))

    assert stopped_ids(actions) == []


def test_old_revision_is_stopped_once_the_new_revision_has_target_ready_replicas() -> None:
    endpoint = make_endpoint(target=2, revision=2)
    replicas = [
        make_replica("old-1", revision=1),
        make_replica("old-2", revision=1),
        make_replica("new-1", revision=2),
        make_replica("new-2", revision=2),
    ]

    actions = run_plan([endpoint], replicas)

    assert actions == [
        StopReplica(replicas[0], "replaced by a newer revision"),
        StopReplica(replicas[1], "replaced by a newer revision"),
    ]


def test_old_revision_is_stopped_in_the_pass_the_last_new_replica_turns_ready() -> None:
    endpoint = make_endpoint(target=1, revision=2)
    old = make_replica("old", revision=1)
    new = make_replica("new", revision=2, state=ReplicaState.STARTING)

    actions = run_plan([endpoint], [old, new], probes={"new": True}, now=at(10))

    assert actions == [MarkReady(new), StopReplica(old, "replaced by a newer revision")]


def test_old_revision_replicas_that_are_not_ready_are_stopped_at_once() -> None:
    endpoint = make_endpoint(target=1, revision=2)
    old_ready = make_replica("old-ready", revision=1)
    old_starting = make_replica("old-starting", revision=1, state=ReplicaState.STARTING)
    old_requested = make_replica("old-requested", revision=1, state=ReplicaState.REQUESTED)
    old_failed = failing_replica("old-failed", failures=1, revision=1, since=T0)
    new = make_replica("new", revision=2, state=ReplicaState.STARTING)

    actions = run_plan(
        [endpoint],
        [old_ready, old_starting, old_requested, old_failed, new],
        probes={"new": False},
        now=at(3600),
    )

    assert sorted(stopped_ids(actions)) == ["old-failed", "old-requested", "old-starting"]
    assert of_type(actions, StartReplica) == []


def test_old_revision_replica_that_crashes_is_stopped_not_restarted() -> None:
    endpoint = make_endpoint(target=1, revision=2)
    old = make_replica("old", revision=1)
    new = make_replica("new", revision=2, state=ReplicaState.STARTING)

    actions = run_plan(
        [endpoint],
        [old, new],
        observed=observing(exited(old), running(new)),
        probes={"new": False},
        now=at(10),
    )

    assert [type(a) for a in actions] == [MarkFailed, StopReplica]
    assert stopped_ids(actions) == ["old"]


# -- adopting and reaping ----------------------------------------------------------


@pytest.mark.parametrize("state", [ReplicaState.REQUESTED, ReplicaState.FAILED])
def test_replica_the_runtime_already_runs_is_adopted_not_started_twice(
    state: ReplicaState,
) -> None:
    endpoint = make_endpoint()
    replica = make_replica("r-1", state=state, since=T0, consecutive_failures=1)

    actions = run_plan(
        [endpoint],
        [replica],
        observed=observing(running(replica, address="10.0.0.7:41000")),
        now=at(3600),
    )

    assert actions == [AdoptReplica(replica, "10.0.0.7:41000")]


def test_running_process_without_an_address_is_not_adopted() -> None:
    endpoint = make_endpoint()
    replica = make_replica("r-1", state=ReplicaState.REQUESTED, since=T0)

    actions = run_plan(
        [endpoint], [replica], observed=observing(running(replica, address=None)), now=at(1)
    )

    assert actions == [StartReplica(endpoint, replica)]


def test_previous_revision_of_a_stopped_endpoint_is_stopped_for_that_reason() -> None:
    endpoint = make_endpoint(revision=2, desired_state=DesiredState.STOPPED)
    old = make_replica("r-old", revision=1)

    actions = run_plan([endpoint], [old], observed=observing(running(old, old.address)))

    assert actions == [StopReplica(old, "the endpoint was stopped or deleted")]


def test_running_process_that_no_replica_owns_is_reaped() -> None:
    endpoint = make_endpoint()
    mine = make_replica("r-1")

    actions = run_plan(
        [endpoint], [mine], observed=observing(running(mine, mine.address), running("ghost"))
    )

    assert actions == [ReapOrphan("ghost")]


def test_exited_process_that_no_replica_owns_is_left_alone() -> None:
    assert run_plan([], [], observed=observing(exited("ghost"))) == []


def test_replicas_whose_endpoint_was_not_loaded_are_stopped_not_reaped() -> None:
    loaded = make_endpoint("ep-1")
    mine = make_replica("r-1", endpoint_id="ep-1")
    stray = make_replica("r-2", endpoint_id="ep-gone")

    actions = run_plan([loaded], [mine, stray])

    assert actions == [StopReplica(stray, "its endpoint is gone")]
