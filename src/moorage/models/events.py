"""What happened to an endpoint, as ``GET .../events`` lists it.

The facts are the replicas' recorded events (``replica_events``): the same rows
status and routing are derived from, so this history cannot disagree with
them. Each one is said as a sentence a user can act on, here, where it can be
tested without the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from moorage.models.replicas import ReplicaEvent, ReplicaEventKind


@dataclass(frozen=True)
class RecordedEvent:
    """A replica's event with the revision that replica runs (which rollout it is part of)."""

    event: ReplicaEvent
    revision: int

    @property
    def message(self) -> str:
        return describe(self.event, self.revision)


@dataclass(frozen=True)
class EventPage:
    items: Sequence[RecordedEvent]
    total: int
    page: int
    page_size: int


def describe(event: ReplicaEvent, revision: int) -> str:
    """One sentence: which replica, what happened and why."""
    who = f"replica {event.replica_id} (revision {revision})"
    detail = event.detail
    match event.kind:
        case ReplicaEventKind.REQUESTED:
            return f"{who} was requested"
        case ReplicaEventKind.STARTED:
            how = "was adopted after a restart" if detail == "adopted" else "started"
            return f"{who} {how}" + (f" at {event.address}" if event.address else "")
        case ReplicaEventKind.READY:
            return f"{who} is ready: it passed its readiness probe and takes requests"
        case ReplicaEventKind.UNREADY:
            why = detail or "it failed a readiness probe"
            return f"{who} left the rotation: {why}"
        case ReplicaEventKind.FAILED:
            reason = f" ({event.reason.value})" if event.reason else ""
            return f"{who} failed{reason}: {detail or 'no detail'}"
        case ReplicaEventKind.STOPPED:
            return f"{who} stopped: {detail or 'no reason recorded'}"
