"""What the controller should do next, as a pure function of plain values.

``plan`` reads desired state (endpoints), recorded state (replicas derived from
their events), and observed state (what the runtime reports, probe results),
and returns actions. It performs no I/O, so every branch is tested with a fake
clock, and the loop that applies the actions stays small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from moorage.models.endpoints import DesiredState, Endpoint, ReadinessProbe
from moorage.models.placement import WAITING_FOR_CAPACITY
from moorage.models.replicas import FailureReason, Replica, ReplicaState
from moorage.models.words import count
from moorage.runtimes.base import Observed


@dataclass(frozen=True)
class PlanPolicy:
    ready_timeout_s: float = 900.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    crash_loop_threshold: int = 3

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
class MarkUnready:
    """A ready replica failed a probe: out of rotation until it passes again."""

    replica: Replica


@dataclass(frozen=True)
class RollBack:
    """The current revision cannot run while an earlier one still serves: go back to it."""

    endpoint: Endpoint
    to_revision: int
    reason: str


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
    CreateReplica
    | StartReplica
    | AdoptReplica
    | MarkReady
    | MarkUnready
    | MarkFailed
    | StopReplica
    | ReapOrphan
    | RollBack
)


def startup_timeout(endpoint: Endpoint, policy: PlanPolicy) -> float:
    """How long a replica of ``endpoint`` may take to pass its first probe: its own
    ``readiness_probe.startup_timeout_s``, else the server's ``ready_timeout_s``."""
    own = endpoint.deploy.readiness_probe.startup_timeout_s
    return own if own is not None else policy.ready_timeout_s


def due_for_probe(
    replica: Replica, probe: ReadinessProbe, last_probe: datetime | None, now: datetime
) -> bool:
    """Whether a replica should be probed this pass, by its endpoint's probe settings."""
    if not replica.state.has_process:
        return False
    if replica.state is ReplicaState.STARTING:
        started = (now - replica.state_since).total_seconds()
        if started < probe.initial_delay_s:
            return False
    return last_probe is None or (now - last_probe).total_seconds() >= probe.period_s


@dataclass(frozen=True)
class ProbeTarget:
    """One probe to start: ``GET path`` on the replica at ``address``, all within
    ``timeout_s`` (connect, head and body together)."""

    replica_id: str
    address: str
    path: str
    timeout_s: float


@dataclass(frozen=True)
class ProbeRecord:
    """A replica's latest finished probe, as the prober's table keeps it."""

    ok: bool
    detail: str
    started_at: datetime
    finished_at: datetime
    failures_in_a_row: int


def probes_due(
    endpoints: Mapping[str, Endpoint],
    replicas: Sequence[Replica],
    observed: Mapping[str, Observed],
    last_started: Mapping[str, datetime],
    in_flight: AbstractSet[str],
    now: datetime,
) -> list[ProbeTarget]:
    """Probes to start now. A replica whose last probe has not finished gets no second
    one: a slow app costs at most one probe at a time, and results arrive in order."""
    due: list[ProbeTarget] = []
    for replica in replicas:
        endpoint = endpoints.get(replica.endpoint_id)
        seen = observed.get(replica.replica_id)
        if endpoint is None or seen is None or not seen.running or not seen.address:
            continue
        if replica.replica_id in in_flight:
            continue
        probe = endpoint.deploy.readiness_probe
        if due_for_probe(replica, probe, last_started.get(replica.replica_id), now):
            due.append(ProbeTarget(replica.replica_id, seen.address, probe.path, probe.timeout_s))
    return due


def probe_verdicts(
    replicas: Sequence[Replica], records: Mapping[str, ProbeRecord]
) -> tuple[dict[str, bool], dict[str, int]]:
    """What ``plan`` reads from the prober's table: each replica's latest result and its
    failures in a row. A starting replica ignores a probe begun before it started: that
    answer came from its previous life (a restart keeps the replica's id)."""
    results: dict[str, bool] = {}
    failures: dict[str, int] = {}
    for replica in replicas:
        record = records.get(replica.replica_id)
        if record is None or not replica.state.has_process:
            continue
        if replica.state is ReplicaState.STARTING and record.started_at < replica.state_since:
            continue
        results[replica.replica_id] = record.ok
        failures[replica.replica_id] = record.failures_in_a_row
    return results, failures


def plan(
    endpoints: Sequence[Endpoint],
    replicas: Sequence[Replica],
    observed: Mapping[str, Observed],
    probes: Mapping[str, bool],
    now: datetime,
    policy: PlanPolicy,
    probe_failures: Mapping[str, int] | None = None,
    free_gpus: Mapping[str, int] | None = None,
    surge_room: Mapping[tuple[str, str], int] | None = None,
    gpu_flavors: AbstractSet[str] = frozenset(),
) -> list[Action]:
    """Actions for every endpoint. ``probes`` holds each replica's latest probe result
    (see ``probe_verdicts``); ``probe_failures`` how many probes in a row it has failed.
    ``surge_room`` is what each owner may still take, by (user_id, flavor_id) in the
    flavor's units (GPUs on the ``gpu_flavors``, replicas elsewhere) and by (user_id,
    ``""``) in replicas (``controller/surge_room.py``); an owner with no entry is not
    bound (the caller gives entries only to owners with a rollout under way). New
    replicas take from it, endpoint by endpoint; a rollout whose surge does not fit
    replaces one replica at a time, and another endpoint's new replica waits."""
    facts = _Facts(
        observed,
        probes,
        probe_failures or {},
        now,
        policy,
        free_gpus or {},
        dict(surge_room or {}),
        gpu_flavors,
    )
    actions: list[Action] = []
    by_endpoint: dict[str, list[Replica]] = {}
    for replica in replicas:
        by_endpoint.setdefault(replica.endpoint_id, []).append(replica)
    for endpoint in endpoints:
        actions.extend(_plan_endpoint(endpoint, by_endpoint.pop(endpoint.service_id, []), facts))
    for orphaned in by_endpoint.values():  # replicas of endpoints not loaded: stop them
        actions.extend(StopReplica(r, "its endpoint is gone") for r in orphaned)
    known = {r.replica_id for r in replicas}
    actions.extend(
        ReapOrphan(rid) for rid, obs in observed.items() if rid not in known and obs.running
    )
    return actions


@dataclass(frozen=True)
class _Facts:
    observed: Mapping[str, Observed]
    probes: Mapping[str, bool]
    probe_failures: Mapping[str, int]
    now: datetime
    policy: PlanPolicy
    # GPUs no replica holds, by flavor: a GPU freed but not yet placed is not short.
    free_gpus: Mapping[str, int] = field(default_factory=dict)
    # Each owner's room under their quotas, taken from as surges are planned.
    surge_room: dict[tuple[str, str], int] = field(default_factory=dict)
    gpu_flavors: AbstractSet[str] = frozenset()

    def take_surge(self, endpoint: Endpoint, replicas: int) -> tuple[int, str]:
        """How many of ``replicas`` new replicas beside the old ones fit the owner's
        room (all of them for an owner not bound), and the quota that bounds the rest;
        takes their share of the room."""
        room = self.surge_room
        flavor_key = (endpoint.user_id, endpoint.flavor_id)
        replicas_key = (endpoint.user_id, _REPLICAS)
        gpus = endpoint.flavor_id in self.gpu_flavors
        units = max(1, endpoint.deploy.gpu_num) if gpus else 1
        by_share = max(0, room[flavor_key] // units) if flavor_key in room else replicas
        by_replicas = max(0, room[replicas_key]) if replicas_key in room else replicas
        fits = min(replicas, by_share, by_replicas)
        if flavor_key in room:
            room[flavor_key] -= fits * units
        if replicas_key in room:
            room[replicas_key] -= fits
        return fits, "flavor_share" if by_share < replicas else "replicas quota"


# The key of the replicas quota in ``surge_room`` (controller/surge_room.py).
_REPLICAS = ""
# Why an old replica goes before its successor starts (docs/controller.md).
ONE_AT_A_TIME = "rolling out one replica at a time: a surge would exceed your {quota}"


def _health(
    replica: Replica, endpoint: Endpoint, facts: _Facts
) -> tuple[ReplicaState, Action | None]:
    """The replica's state after what was observed this pass, and the action recording it."""
    obs = facts.observed.get(replica.replica_id)
    probe_ok = facts.probes.get(replica.replica_id)
    running = obs is not None and obs.running
    state = replica.state
    if state.has_process and not running:
        return ReplicaState.FAILED, MarkFailed(replica, FailureReason.EXITED, _exit_detail(obs))
    if state is ReplicaState.STARTING:
        if probe_ok:
            return ReplicaState.READY, MarkReady(replica)
        waited = (facts.now - replica.state_since).total_seconds()
        timeout = startup_timeout(endpoint, facts.policy)
        if waited > timeout:
            return ReplicaState.FAILED, MarkFailed(
                replica,
                FailureReason.NOT_READY,
                f"no HTTP answer on the app's port within {timeout:g} s; check that the "
                "command starts a server listening on $PORT, or raise "
                "readiness_probe.startup_timeout_s if it needs longer to load",
            )
    if state is ReplicaState.READY and probe_ok is False:
        return ReplicaState.UNREADY, MarkUnready(replica)
    if state is ReplicaState.UNREADY:
        if probe_ok:
            return ReplicaState.READY, MarkReady(replica)
        probe = endpoint.deploy.readiness_probe
        failed = facts.probe_failures.get(replica.replica_id, 0)
        if failed >= probe.failure_threshold:
            return ReplicaState.FAILED, MarkFailed(
                replica,
                FailureReason.UNHEALTHY,
                f"failed {failed} readiness probes in a row (GET {probe.path}); replaced",
            )
    adoptable = state in (ReplicaState.REQUESTED, ReplicaState.FAILED)
    if adoptable and running and obs is not None and obs.address:
        return ReplicaState.STARTING, AdoptReplica(replica, obs.address)
    return state, None


def _exit_detail(obs: Observed | None) -> str:
    if obs is None:
        return "the replica's process is gone"
    code = f"exited with code {obs.exit_code}" if obs.exit_code is not None else "exited"
    return f"{code}; last output: {obs.output_tail}" if obs.output_tail else code


def _rollback(
    endpoint: Endpoint,
    current: Sequence[Replica],
    previous: Sequence[Replica],
    state: Mapping[str, ReplicaState],
    policy: PlanPolicy,
) -> RollBack | None:
    """Goes back to the revision still serving when the new one cannot run."""
    serving = [r for r in previous if state[r.replica_id] is ReplicaState.READY]
    failing = [r for r in current if r.cannot_run(policy.crash_loop_threshold)]
    if not serving or not failing or endpoint.wanted_replicas == 0:
        return None
    worst = max(failing, key=lambda r: r.consecutive_failures)
    return RollBack(
        endpoint,
        to_revision=max(r.revision for r in serving),
        reason=f"replica {worst.replica_id} failed {count(worst.consecutive_failures, 'time')}: "
        f"{worst.last_failure}",
    )


def _plan_endpoint(endpoint: Endpoint, replicas: list[Replica], facts: _Facts) -> list[Action]:
    actions: list[Action] = []
    state: dict[str, ReplicaState] = {}
    for replica in replicas:
        new_state, action = _health(replica, endpoint, facts)
        state[replica.replica_id] = new_state
        if action is not None:
            actions.append(action)

    wanted = endpoint.wanted_replicas
    current = [r for r in replicas if r.revision == endpoint.revision]
    previous = [r for r in replicas if r.revision != endpoint.revision]

    rollback = _rollback(endpoint, current, previous, state, facts.policy)
    if rollback is not None:  # the next pass, on the old revision, stops the failed ones
        return [*actions, rollback]

    # Scale the current revision: stop the least useful extras first.
    held_back, bound_by = 0, ""
    if len(current) > wanted:
        ranked = sorted(
            current,
            key=lambda r: (state[r.replica_id] is ReplicaState.READY, -r.requested_at.timestamp()),
        )
        why = "scaled down" if wanted else _why_none(endpoint)
        for extra in ranked[: len(current) - wanted]:
            actions.append(StopReplica(extra, why))
        kept = ranked[len(current) - wanted :]
    else:
        kept = current
        missing = wanted - len(current)
        # Only what the owner's quotas leave while a rollout of theirs surges (an owner
        # with no rollout has no room entry: the API checked the target).
        fits, bound_by = facts.take_surge(endpoint, missing) if missing else (0, "")
        held_back = missing - fits
        actions.extend(CreateReplica(endpoint) for _ in range(fits))

    now, policy = facts.now, facts.policy
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
    going = []
    for replica in previous:
        if current_ready >= wanted or state[replica.replica_id] is not ReplicaState.READY:
            going.append(replica)
    actions.extend(StopReplica(r, _why_previous(r, endpoint)) for r in going)
    room = _one_at_a_time(kept, previous, going, state, bound_by) if held_back else []
    if not room and facts.free_gpus.get(endpoint.flavor_id, 0) < endpoint.deploy.gpu_num:
        room = _make_room(kept, previous, going, state, endpoint)
    return [*actions, *room]


def _one_at_a_time(
    kept: Sequence[Replica],
    previous: Sequence[Replica],
    going: Sequence[Replica],
    state: Mapping[str, ReplicaState],
    quota: str,
) -> list[Action]:
    """A rollout whose surge would take the owner past a quota: the oldest old replica
    goes first, and its successor is created once it has stopped (the next passes),
    so the owner never holds more than the quota allows. One at a time: only while
    no old replica is on its way out and every new one serves (the old one going
    now may be the last that does)."""
    serving = [r for r in previous if r not in going]
    new_ready = all(state[r.replica_id] is ReplicaState.READY for r in kept)
    if going or not serving or not new_ready:
        return []
    oldest = min(serving, key=lambda r: r.requested_at)
    return [StopReplica(oldest, ONE_AT_A_TIME.format(quota=quota))]


def _make_room(
    kept: Sequence[Replica],
    previous: Sequence[Replica],
    going: Sequence[Replica],
    state: Mapping[str, ReplicaState],
    endpoint: Endpoint,
) -> list[Action]:
    """A rollout on a GPU flavor with no GPU to spare: the new revision's replicas wait
    for GPUs the old one holds, which waits for them to be ready. Breaks the wait one
    replica at a time: while a new replica waits for capacity and no old one is on its
    way out and every placed new one serves, the oldest old one goes, and its GPUs
    go to the new one (or to an older waiting replica of the flavor: oldest first)."""
    waiting = [
        r
        for r in kept
        if state[r.replica_id] is ReplicaState.REQUESTED
        and (r.progress or "").startswith(WAITING_FOR_CAPACITY)
    ]
    # Placed new replicas must be serving first: the old one going now may be the last.
    placed_ready = all(state[r.replica_id] is ReplicaState.READY for r in kept if r not in waiting)
    serving = [r for r in previous if r not in going]
    if not waiting or going or not serving or not placed_ready:
        return []
    oldest = min(serving, key=lambda r: r.requested_at)
    return [StopReplica(oldest, "its GPUs go to a replica of the new revision")]


def _why_previous(replica: Replica, endpoint: Endpoint) -> str:
    """Why a replica of another revision goes: a later revision is one rolled back from."""
    if not endpoint.wanted_replicas:
        return "the endpoint was stopped or deleted"
    if replica.revision > endpoint.revision:
        return "its revision was rolled back"
    return "replaced by a newer revision"


def _why_none(endpoint: Endpoint) -> str:
    """Why an endpoint wants no replica: stopped, deleted, or scaled to zero."""
    running = endpoint.desired_state is DesiredState.RUNNING and not endpoint.is_deleted
    if endpoint.autoscaled and running:
        return "scaled to zero: idle"
    return "the endpoint was stopped or deleted"
