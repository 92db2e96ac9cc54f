"""A replica's life as a list of events, and the view derived from them.

Nothing about a replica's state is stored except its events, so status,
routing and (later) billing all read the same facts and cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

# Re-exported: they were defined here before the registry held them.
from moorage.models.states import FailureReason as FailureReason
from moorage.models.states import ReplicaEventKind as ReplicaEventKind
from moorage.models.states import ReplicaState as ReplicaState

_STATE_AFTER = {
    ReplicaEventKind.REQUESTED: ReplicaState.REQUESTED,
    ReplicaEventKind.STARTED: ReplicaState.STARTING,
    ReplicaEventKind.READY: ReplicaState.READY,
    ReplicaEventKind.UNREADY: ReplicaState.UNREADY,
    ReplicaEventKind.FAILED: ReplicaState.FAILED,
    ReplicaEventKind.STOPPED: ReplicaState.STOPPED,
}


@dataclass(frozen=True)
class ReplicaEvent:
    replica_id: str
    endpoint_id: str
    kind: ReplicaEventKind
    at: datetime
    address: str | None = None
    reason: FailureReason | None = None
    detail: str | None = None


@dataclass(frozen=True)
class StartupWatch:
    """What the controller last saw of a starting replica.

    ``probe`` is its latest probe's result ("GET /health: answered 503"), the same
    since ``probe_since``; ``given_port`` the port the app was told to listen on
    (``$PORT``); ``listening`` the TCP ports its processes listen on (None: the
    runtime cannot tell); ``inside_only`` those it listens on at a loopback address
    alone where its runtime cannot reach that ("127.0.0.1:8000", in a container)."""

    probe: str | None = None
    probe_since: datetime | None = None
    given_port: int | None = None
    listening: tuple[int, ...] | None = None
    inside_only: tuple[str, ...] = ()

    @property
    def unreachable(self) -> str | None:
        """The loopback address the app listens on ``$PORT`` at, where nothing outside
        its container reaches it; None when it is reachable or does not listen."""
        for address in self.inside_only:
            if address.rpartition(":")[2] == str(self.given_port):
                return address
        return None

    @property
    def wrong_port(self) -> bool:
        """The app listens, but not on the port it was given."""
        return (
            self.given_port is not None
            and bool(self.listening)
            and self.given_port not in (self.listening or ())
        )


_NONE_SEEN = StartupWatch()


@dataclass(frozen=True)
class Replica:
    """One replica of an endpoint, derived from its events (oldest first)."""

    replica_id: str
    endpoint_id: str
    revision: int
    state: ReplicaState
    address: str | None
    state_since: datetime
    requested_at: datetime
    consecutive_failures: int
    last_failure: str | None
    last_failure_reason: FailureReason | None = None
    progress: str | None = None
    startup: StartupWatch = StartupWatch()

    def cannot_run(self, crash_loop_threshold: int) -> bool:
        """A crash loop, or one failure that retrying alone will not fix."""
        if self.consecutive_failures >= crash_loop_threshold:
            return True
        reason = self.last_failure_reason
        return self.consecutive_failures > 0 and reason is not None and reason.needs_user

    @property
    def url(self) -> str | None:
        return f"http://{self.address}" if self.address else None


def derive_replica(
    replica_id: str,
    endpoint_id: str,
    revision: int,
    events: Sequence[ReplicaEvent],
    progress: str | None = None,
    startup: StartupWatch | None = None,
) -> Replica:
    """Folds events into the replica's current state.

    Failures count since the replica was last ready, which is what tells a
    replica that crashes on start (a broken command) from one that served for a
    day and then crashed once.
    """
    if not events:
        raise ValueError(f"replica {replica_id} has no events")
    state = ReplicaState.REQUESTED
    address: str | None = None
    failures = 0
    last_failure: str | None = None
    last_reason: FailureReason | None = None
    since = events[0].at
    for event in events:
        state = _STATE_AFTER[event.kind]
        since = event.at
        if event.kind is ReplicaEventKind.STARTED:
            address = event.address
        elif event.kind is ReplicaEventKind.READY:
            failures = 0
            last_failure = None
            last_reason = None
        elif event.kind is ReplicaEventKind.FAILED:
            failures += 1
            last_failure = event.detail
            last_reason = event.reason
            address = None
        elif event.kind is ReplicaEventKind.STOPPED:
            address = None
    return Replica(
        replica_id=replica_id,
        endpoint_id=endpoint_id,
        revision=revision,
        state=state,
        address=address,
        state_since=since,
        requested_at=events[0].at,
        consecutive_failures=failures,
        last_failure=last_failure,
        last_failure_reason=last_reason,
        progress=progress,
        # What was seen of an earlier life says nothing of this one.
        startup=startup if startup is not None and state is ReplicaState.STARTING else _NONE_SEEN,
    )


def shown_address(address: str | None) -> str | None:
    """A replica's address as its owner sees it: a TCP address as it is; a sandboxed
    replica's socket by its file name only, since its full path names the host's
    folders (``MOORAGE_HOME``), which are the operator's, not the tenant's."""
    if address is None or not address.startswith("unix:"):
        return address
    return "unix:" + address.rsplit("/", 1)[-1]
