"""Small builders so unit tests state only what matters to them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint
from moorage.models.replicas import (
    FailureReason,
    Replica,
    ReplicaEvent,
    ReplicaEventKind,
    ReplicaState,
    derive_replica,
)
from moorage.runtimes.base import Observed

# The same instant FakeClock starts at, so builders and the fake_clock fixture agree.
T0 = datetime(2026, 1, 1, tzinfo=UTC)

_A = TypeVar("_A")


def at(seconds: float) -> datetime:
    """``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def make_endpoint(
    service_id: str = "ep-1",
    *,
    user_id: str = "user-1",
    target: int = 1,
    revision: int = 1,
    desired_state: DesiredState = DesiredState.RUNNING,
    deleted_at: datetime | None = None,
) -> Endpoint:
    return Endpoint(
        service_id=service_id,
        user_id=user_id,
        name=f"name-{service_id}",
        description="",
        payment_type="usd",
        flavor_id="f" * 32,
        scale_type="manual",
        target_instance_number=target,
        deploy=DeploySpec(image_url="local", command="python -m http.server $PORT", port=8000),
        revision=revision,
        desired_state=desired_state,
        service_type="normal",
        created_at=T0,
        updated_at=T0,
        deleted_at=deleted_at,
    )


def make_replica(
    replica_id: str,
    *,
    endpoint_id: str = "ep-1",
    revision: int = 1,
    state: ReplicaState = ReplicaState.READY,
    since: datetime = T0,
    requested_at: datetime | None = None,
    address: str | None = None,
    consecutive_failures: int = 0,
    last_failure: str | None = None,
    last_failure_reason: FailureReason | None = None,
) -> Replica:
    """A replica as derived from its events; only what a test cares about needs saying."""
    if address is None and state.has_process:
        address = f"{replica_id}.replicas.test:8000"
    return Replica(
        replica_id=replica_id,
        endpoint_id=endpoint_id,
        revision=revision,
        state=state,
        address=address,
        state_since=since,
        requested_at=requested_at if requested_at is not None else since,
        consecutive_failures=consecutive_failures,
        last_failure=last_failure,
        last_failure_reason=last_failure_reason,
    )


def failing_replica(
    replica_id: str,
    *,
    failures: int,
    reason: FailureReason = FailureReason.EXITED,
    detail: str = "exited with code 1; last output: ImportError: no module named app",
    state: ReplicaState = ReplicaState.FAILED,
    endpoint_id: str = "ep-1",
    revision: int = 1,
    since: datetime = T0,
) -> Replica:
    return make_replica(
        replica_id,
        endpoint_id=endpoint_id,
        revision=revision,
        state=state,
        since=since,
        consecutive_failures=failures,
        last_failure=detail,
        last_failure_reason=reason,
    )


@dataclass
class ReplicaLog:
    """A replica's events, written the way the reconciler records them."""

    replica_id: str = "r-1"
    endpoint_id: str = "ep-1"
    revision: int = 1
    events: list[ReplicaEvent] = field(default_factory=list)

    def _add(
        self,
        kind: ReplicaEventKind,
        when: datetime,
        *,
        address: str | None = None,
        reason: FailureReason | None = None,
        detail: str | None = None,
    ) -> ReplicaLog:
        self.events.append(
            ReplicaEvent(self.replica_id, self.endpoint_id, kind, when, address, reason, detail)
        )
        return self

    def requested(self, when: datetime) -> ReplicaLog:
        return self._add(ReplicaEventKind.REQUESTED, when)

    def started(self, when: datetime, address: str = "127.0.0.1:9001") -> ReplicaLog:
        return self._add(ReplicaEventKind.STARTED, when, address=address)

    def ready(self, when: datetime) -> ReplicaLog:
        return self._add(ReplicaEventKind.READY, when)

    def failed(
        self,
        when: datetime,
        reason: FailureReason = FailureReason.EXITED,
        detail: str = "exited with code 1",
    ) -> ReplicaLog:
        return self._add(ReplicaEventKind.FAILED, when, reason=reason, detail=detail)

    def stopped(self, when: datetime, why: str = "scaled down") -> ReplicaLog:
        return self._add(ReplicaEventKind.STOPPED, when, detail=why)

    def replica(self) -> Replica:
        return derive_replica(self.replica_id, self.endpoint_id, self.revision, self.events)


def running(replica: Replica | str, address: str | None = "127.0.0.1:9100") -> Observed:
    """The runtime reports the replica's process alive."""
    replica_id = replica if isinstance(replica, str) else replica.replica_id
    endpoint_id = "ep-1" if isinstance(replica, str) else replica.endpoint_id
    revision = 1 if isinstance(replica, str) else replica.revision
    return Observed(replica_id, endpoint_id, revision, address, running=True)


def exited(
    replica: Replica | str, exit_code: int | None = 1, output_tail: str | None = None
) -> Observed:
    """The runtime reports the replica's process gone."""
    replica_id = replica if isinstance(replica, str) else replica.replica_id
    endpoint_id = "ep-1" if isinstance(replica, str) else replica.endpoint_id
    revision = 1 if isinstance(replica, str) else replica.revision
    return Observed(
        replica_id,
        endpoint_id,
        revision,
        None,
        running=False,
        exit_code=exit_code,
        output_tail=output_tail,
    )


def observing(*observations: Observed) -> dict[str, Observed]:
    return {o.replica_id: o for o in observations}


def all_running(replicas: Iterable[Replica]) -> dict[str, Observed]:
    """The runtime reports every replica that should have a process as alive."""
    return observing(*(running(r, r.address) for r in replicas if r.state.has_process))


def of_type(actions: Iterable[object], kind: type[_A]) -> list[_A]:
    return [a for a in actions if isinstance(a, kind)]
