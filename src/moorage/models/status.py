"""An endpoint's status, derived from what it wants and what its replicas did.

Pure: the same endpoint, replicas, policy and ``now`` always give the same answer,
so the API can derive status on every read instead of keeping a copy that drifts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from moorage.models.endpoints import DesiredState, Endpoint, EndpointStatus
from moorage.models.replicas import Replica, ReplicaState
from moorage.models.startup import startup_note
from moorage.models.states import FailureReason
from moorage.models.words import count

# An automatic endpoint that wants no replica (docs/autoscaling.md, "Scale to zero").
SCALED_TO_ZERO = (
    "scaled to zero: no replica runs or is billed; the next request starts one and is "
    "held until it is ready"
)


@dataclass(frozen=True)
class StatusPolicy:
    crash_loop_threshold: int = 3
    # MOORAGE_READY_TIMEOUT_S: how long a replica may take to start, unless its
    # endpoint's readiness_probe.startup_timeout_s says otherwise.
    ready_timeout_s: float = 900.0


@dataclass(frozen=True)
class DerivedStatus:
    status: EndpointStatus
    status_info: str | None = None


def derive_status(
    endpoint: Endpoint,
    replicas: Sequence[Replica],
    policy: StatusPolicy,
    now: datetime | None = None,
) -> DerivedStatus:
    """``available`` whenever requests are served: its revision is ready, some of its
    replicas are while others cannot run (``status_info`` names the failing one), or
    (while a revision that cannot run is rolled back) an earlier one still serves.
    ``unavailable`` only when nothing serves and a replica cannot run.
    ``initializing`` says what the replicas are doing, and for how long when ``now``
    is given (``models/startup.py``)."""
    if endpoint.is_deleted:
        return DerivedStatus(EndpointStatus.STOPPED)
    if endpoint.desired_state is DesiredState.STOPPED:  # by moorage: it says why
        return DerivedStatus(EndpointStatus.STOPPED, endpoint.stop_reason)
    current = [r for r in replicas if r.revision == endpoint.revision and r.state.is_live]
    ready = sum(1 for r in current if r.state is ReplicaState.READY)
    if ready >= endpoint.target_instance_number:
        if endpoint.autoscaled and endpoint.target_instance_number == 0:
            return DerivedStatus(EndpointStatus.AVAILABLE, SCALED_TO_ZERO)
        return DerivedStatus(EndpointStatus.AVAILABLE, endpoint.rollout_note)
    failing = [r for r in current if r.cannot_run(policy.crash_loop_threshold)]
    if failing:
        worst = max(failing, key=lambda r: r.consecutive_failures)
        serving = [
            r for r in replicas if r.revision != endpoint.revision and r.state is ReplicaState.READY
        ]
        if serving:  # the controller rolls back to them on its next pass
            return DerivedStatus(
                EndpointStatus.AVAILABLE,
                f"revision {endpoint.revision} cannot run (replica {worst.replica_id} failed "
                f"{count(worst.consecutive_failures, 'time')}, last: {worst.last_failure}); "
                f"rolling back to revision {max(r.revision for r in serving)}, which keeps "
                "serving.",
            )
        failed = (
            f"replica {worst.replica_id} failed {count(worst.consecutive_failures, 'time')} "
            f"in a row, last: {worst.last_failure}. {advice(worst)}"
        )
        if ready:  # requests are served, by fewer replicas than asked for
            return DerivedStatus(
                EndpointStatus.AVAILABLE,
                f"{ready} of {count(endpoint.target_instance_number, 'replica')} "
                f"{'serves' if ready == 1 else 'serve'}; {len(failing)} cannot run: {failed}",
            )
        return DerivedStatus(
            EndpointStatus.UNAVAILABLE,
            f"{len(failing)} of {count(endpoint.target_instance_number, 'replica')} "
            f"cannot run: {failed}",
        )
    own = endpoint.deploy.readiness_probe.startup_timeout_s
    timeout_s = own if own is not None else policy.ready_timeout_s
    note = startup_note(current, now, timeout_s)
    if endpoint.autoscaled and (ready or endpoint.scaled_at is not None):
        # Scaling up, or from zero: still served (requests are held while none is ready).
        wanted = count(endpoint.target_instance_number, "replica")
        doing = (
            f"scaling to {wanted}: {ready} ready and serving, the others starting"
            if ready
            else f"cold start of {wanted}; requests are held until one is ready"
        )
        return DerivedStatus(EndpointStatus.AVAILABLE, doing + (f" ({note})" if note else ""))
    return DerivedStatus(EndpointStatus.INITIALIZING, note)


def advice(replica: Replica) -> str:
    """What to do about the replica's failure: what fits its reason, never a check
    that cannot help (a replica that never started has no logs, and its message
    already names what to fix)."""
    reason = replica.last_failure_reason
    if reason is FailureReason.START_ERROR:
        return (
            "It never started, so it has no logs: fix what the message names; moorage "
            "keeps retrying with backoff, so the next try after the fix starts it."
        )
    logs = f"the replica logs ({LOGS})"
    if reason is FailureReason.NOT_READY:
        return f"{logs[0].upper()}{logs[1:]} show what the app did meanwhile; {_RETRYING}"
    return (
        f"Check deploy_metadata (command, port) and {logs}, then PUT a fixed one "
        f"(`moorage endpoints update`); {_RETRYING}"
    )


LOGS = "GET /v1/inference-service/{id}/logs; `moorage logs`"
_RETRYING = "moorage keeps retrying with backoff meanwhile."
