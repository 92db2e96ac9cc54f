"""The status a user reads through a whole automatic rollback.

A revision that cannot run is rolled back while the earlier one keeps serving
every request, so at no moment may the endpoint read ``unavailable``. The test
drives ``plan`` pass by pass with a fake clock, records each action's event the
way the reconciler does, and derives the status after every single event.
"""

from __future__ import annotations

import dataclasses

from moorage.clock import FakeClock
from moorage.controller.plan import (
    Action,
    MarkFailed,
    PlanPolicy,
    RollBack,
    StartReplica,
    StopReplica,
    plan,
)
from moorage.models.endpoints import Endpoint, EndpointStatus
from moorage.models.replicas import Replica
from moorage.models.status import DerivedStatus, StatusPolicy, derive_status
from moorage.runtimes.base import Observed
from tests.unit.builders import T0, ReplicaLog, exited, make_endpoint, running

POLICY = PlanPolicy()
STATUS_POLICY = StatusPolicy(crash_loop_threshold=POLICY.crash_loop_threshold)
NOTE = "revision 2 could not run and was rolled back to revision 1, which keeps serving"


@dataclasses.dataclass
class _World:
    """The store (endpoint and replica logs) and the runtime (which processes live)."""

    endpoint: Endpoint
    logs: dict[str, ReplicaLog]
    alive: set[str]
    clock: FakeClock
    seen: list[DerivedStatus] = dataclasses.field(default_factory=list)

    def replicas(self) -> list[Replica]:
        return [log.replica() for log in self.logs.values() if log.replica().state.is_live]

    def observe(self) -> dict[str, Observed]:
        observed: dict[str, Observed] = {}
        for replica in self.replicas():
            if replica.replica_id in self.alive:
                observed[replica.replica_id] = running(replica)
            elif replica.state.has_process:
                observed[replica.replica_id] = exited(
                    replica, output_tail="OSError: missing weights"
                )
        return observed

    def read_status(self) -> None:
        self.seen.append(derive_status(self.endpoint, self.replicas(), STATUS_POLICY))

    def apply(self, action: Action) -> None:
        now = self.clock.now()
        match action:
            case StartReplica(_, replica):
                self.logs[replica.replica_id].started(now)
                if replica.revision == 1:  # the new revision exits as soon as it starts
                    self.alive.add(replica.replica_id)
            case MarkFailed(replica, reason, detail):
                self.logs[replica.replica_id].failed(now, reason, detail)
            case StopReplica(replica, why):
                self.logs[replica.replica_id].stopped(now, why)
                self.alive.discard(replica.replica_id)
            case RollBack(_, to_revision, reason):
                self.endpoint = dataclasses.replace(
                    self.endpoint, revision=to_revision, rollout_note=f"{NOTE}: {reason}"
                )
            case _:
                raise AssertionError(f"unexpected action {action}")
        self.read_status()


def test_an_automatic_rollback_reads_available_from_first_failure_to_the_end() -> None:
    clock = FakeClock(T0)
    old = ReplicaLog("old", revision=1).requested(T0).started(T0).ready(T0)
    new = ReplicaLog("new", revision=2).requested(T0)
    world = _World(make_endpoint(target=1, revision=2), {"old": old, "new": new}, {"old"}, clock)
    world.read_status()

    for _ in range(300):
        clock.advance(0.5)
        replicas, observed = world.replicas(), world.observe()
        actions = plan([world.endpoint], replicas, observed, {}, clock.now(), POLICY)
        for action in actions:
            world.apply(action)
        if not new.replica().state.is_live:
            break
    else:
        raise AssertionError("the broken revision was never rolled back and stopped")

    statuses = [s.status for s in world.seen]
    assert EndpointStatus.UNAVAILABLE not in statuses
    first_unrunnable = next(
        i for i, s in enumerate(world.seen) if s.status is EndpointStatus.AVAILABLE
    )
    rollback = world.seen[first_unrunnable:]
    assert all(s.status is EndpointStatus.AVAILABLE for s in rollback)
    assert all(s.status_info and "revision 2" in s.status_info for s in rollback)
    assert "rolling back to revision 1" in (rollback[0].status_info or "")
    assert "missing weights" in (rollback[0].status_info or "")
    assert world.endpoint.revision == 1
    assert new.events[-1].detail == "its revision was rolled back"
    assert world.seen[-1] == DerivedStatus(EndpointStatus.AVAILABLE, world.endpoint.rollout_note)


def test_a_revision_that_cannot_run_with_nothing_else_serving_is_unavailable() -> None:
    """No earlier revision serves (the first revision is broken): the status says so."""
    broken = ReplicaLog("new", revision=1).requested(T0)
    for n in range(POLICY.crash_loop_threshold):
        broken.started(T0).failed(T0, detail=f"exited with code {n}")

    status = derive_status(make_endpoint(target=1), [broken.replica()], STATUS_POLICY)

    assert status.status is EndpointStatus.UNAVAILABLE
