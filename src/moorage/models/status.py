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
    """``available`` whenever requests are served as the endpoint asks: its revision is
    ready, or (while a revision that cannot run is rolled back) an earlier one still
    serves. ``unavailable`` only when nothing serves and a replica cannot run.
    ``initializing`` says what the replicas are doing, and for how long when ``now``
    is given (``models/startup.py``)."""
    if endpoint.is_deleted or endpoint.desired_state is DesiredState.STOPPED:
        return DerivedStatus(EndpointStatus.STOPPED)
    current = [r for r in replicas if r.revision == endpoint.revision and r.state.is_live]
    ready = sum(1 for r in current if r.state is ReplicaState.READY)
    if ready >= endpoint.target_instance_number:
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
                f"{worst.consecutive_failures} time(s), last: {worst.last_failure}); rolling "
                f"back to revision {max(r.revision for r in serving)}, which keeps serving.",
            )
        return DerivedStatus(
            EndpointStatus.UNAVAILABLE,
            f"{len(failing)} of {endpoint.target_instance_number} replicas cannot run: "
            f"replica {worst.replica_id} failed {worst.consecutive_failures} time(s) in a row, "
            f"last: {worst.last_failure}. Check deploy_metadata (command, port) and the "
            "replica logs, then PUT a fixed deploy_metadata; moorage keeps retrying "
            "with backoff meanwhile.",
        )
    own = endpoint.deploy.readiness_probe.startup_timeout_s
    timeout_s = own if own is not None else policy.ready_timeout_s
    return DerivedStatus(EndpointStatus.INITIALIZING, startup_note(current, now, timeout_s))
