"""What the controller should do next, as a pure function of plain values.

``plan`` reads desired state (endpoints), recorded state (replicas derived from
their events), and observed state (what the runtime reports, probe results),
and returns actions. It performs no I/O, so every branch is tested with a fake
clock, and the loop that applies the actions stays small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from moorage.models.endpoints import Endpoint
from moorage.models.replicas import FailureReason, Replica, ReplicaState
from moorage.runtimes.base import Observed


@dataclass(frozen=True)
class PlanPolicy:
    ready_timeout_s: float = 900.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    def backoff(self, consecutive_failures: int) -> timedelta:
        # Capping the exponent first keeps a days-long crash loop from overflowing.
        exponent = min(max(0, consecutive_failures - 1), 32)
        return timedelta(seconds=min(self.backoff_max_s, self.backoff_base_s * 2**exponent))


@dataclass(frozen=True)
class CreateReplica:
    endpoint: Endpoint


@dataclass(frozen=True)
class StartReplica:
    endpoint: Endpoint
    replica: Replica


@dataclass(frozen=True)
class AdoptReplica:
    """The runtime runs a replica the store thinks is not running (a crash between
    starting it and recording that): record it as started instead of starting twice."""

    replica: Replica
    address: str


@dataclass(frozen=True)
class MarkReady:
    replica: Replica


@dataclass(frozen=True)
class MarkFailed:
    replica: Replica
    reason: FailureReason
    detail: str


@dataclass(frozen=True)
class StopReplica:
    replica: Replica
    why: str


@dataclass(frozen=True)
class ReapOrphan:
    """Something the runtime runs that no live replica in the store owns."""

    replica_id: str


Action = (
    CreateReplica | StartReplica | AdoptReplica | MarkReady | MarkFailed | StopReplica | ReapOrphan
)


def plan(
    endpoints: Sequence[Endpoint],
    replicas: Sequence[Replica],
    observed: Mapping[str, Observed],
    probes: Mapping[str, bool],
    now: datetime,
    policy: PlanPolicy,
) -> list[Action]:
    actions: list[Action] = []
    by_endpoint: dict[str, list[Replica]] = {}
    for replica in replicas:
        by_endpoint.setdefault(replica.endpoint_id, []).append(replica)
    for endpoint in endpoints:
        actions.extend(
            _plan_endpoint(
                endpoint, by_endpoint.pop(endpoint.service_id, []), observed, probes, now, policy
            )
        )
    for orphaned in by_endpoint.values():  # replicas of endpoints not loaded: stop them
        actions.extend(StopReplica(r, "its endpoint is gone") for r in orphaned)
    known = {r.replica_id for r in replicas}
    actions.extend(
        ReapOrphan(rid) for rid, obs in observed.items() if rid not in known and obs.running
    )
    return actions


def _health(
    replica: Replica,
    obs: Observed | None,
    probe_ok: bool | None,
    now: datetime,
    policy: PlanPolicy,
) -> tuple[ReplicaState, Action | None]:
    """The replica's state after what was observed this pass, and the action recording it."""
    running = obs is not None and obs.running
    if replica.state.has_process and not running:
        return ReplicaState.FAILED, MarkFailed(replica, FailureReason.EXITED, _exit_detail(obs))
    if replica.state is ReplicaState.STARTING:
        if probe_ok:
            return ReplicaState.READY, MarkReady(replica)
        waited = (now - replica.state_since).total_seconds()
        if waited > policy.ready_timeout_s:
            return ReplicaState.FAILED, MarkFailed(
                replica,
                FailureReason.NOT_READY,
                f"no HTTP answer on the app's port within {policy.ready_timeout_s:g} s; "
                "check that the command starts a server listening on $PORT",
            )
    adoptable = replica.state in (ReplicaState.REQUESTED, ReplicaState.FAILED)
    if adoptable and running and obs is not None and obs.address:
        return ReplicaState.STARTING, AdoptReplica(replica, obs.address)
    return replica.state, None


def _exit_detail(obs: Observed | None) -> str:
    if obs is None:
        return "the replica's process is gone"
    code = f"exited with code {obs.exit_code}" if obs.exit_code is not None else "exited"
    return f"{code}; last output: {obs.output_tail}" if obs.output_tail else code


def _plan_endpoint(
    endpoint: Endpoint,
    replicas: list[Replica],
    observed: Mapping[str, Observed],
    probes: Mapping[str, bool],
    now: datetime,
    policy: PlanPolicy,
) -> list[Action]:
    actions: list[Action] = []
    state: dict[str, ReplicaState] = {}
    for replica in replicas:
        new_state, action = _health(
            replica, observed.get(replica.replica_id), probes.get(replica.replica_id), now, policy
        )
        state[replica.replica_id] = new_state
        if action is not None:
            actions.append(action)

    wanted = endpoint.wanted_replicas
    current = [r for r in replicas if r.revision == endpoint.revision]
    previous = [r for r in replicas if r.revision != endpoint.revision]

    # Scale the current revision: stop the least useful extras first.
    if len(current) > wanted:
        ranked = sorted(
            current,
            key=lambda r: (state[r.replica_id] is ReplicaState.READY, -r.requested_at.timestamp()),
        )
        for extra in ranked[: len(current) - wanted]:
            actions.append(StopReplica(extra, "scaled down"))
        kept = ranked[len(current) - wanted :]
    else:
        kept = current
        actions.extend(CreateReplica(endpoint) for _ in range(wanted - len(current)))

    for replica in kept:
        current_state = state[replica.replica_id]
        if current_state is ReplicaState.REQUESTED:
            actions.append(StartReplica(endpoint, replica))
        elif current_state is ReplicaState.FAILED:
            failures = replica.consecutive_failures + (replica.state is not ReplicaState.FAILED)
            since = replica.state_since if replica.state is ReplicaState.FAILED else now
            if now >= since + policy.backoff(failures):
                actions.append(StartReplica(endpoint, replica))

    # Earlier revisions serve until the current one is fully ready, then go.
    current_ready = sum(1 for r in kept if state[r.replica_id] is ReplicaState.READY)
    why = "replaced by a newer revision" if wanted else "the endpoint was stopped or deleted"
    for replica in previous:
        if current_ready >= wanted or state[replica.replica_id] is not ReplicaState.READY:
            actions.append(StopReplica(replica, why))
    return actions
