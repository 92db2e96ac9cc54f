"""What happened to an endpoint, as ``GET .../events`` lists it and the log says it.

Two kinds of facts: the replicas' recorded events (``replica_events``), the
same rows status and routing are derived from, so this history cannot disagree
with them; and the endpoint's own changes (``endpoint_events``: created,
scaled, stopped, a rollout begun, finished or rolled back), written in the
transaction that makes the change. Each is said as a sentence a user can act
on, here, where it can be tested without the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from moorage.models.endpoints import DesiredState, Endpoint
from moorage.models.replicas import ReplicaEvent, ReplicaEventKind, shown_address
from moorage.models.states import EndpointEventKind
from moorage.models.words import count


@dataclass(frozen=True)
class EndpointChange:
    """A change to the endpoint itself; ``revision`` is the one it runs afterwards."""

    endpoint_id: str
    kind: EndpointEventKind
    at: datetime
    revision: int
    message: str


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
    items: Sequence[RecordedEvent | EndpointChange]
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
            return f"{who} {how}" + (f" at {shown_address(event.address)}" if event.address else "")
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


def changes(before: Endpoint | None, after: Endpoint, at: datetime) -> list[EndpointChange]:
    """What one accepted write did to the endpoint, ``before`` None for a create."""

    def change(kind: EndpointEventKind, message: str) -> EndpointChange:
        return EndpointChange(after.service_id, kind, at, after.revision, message)

    if before is None:
        return [
            change(
                EndpointEventKind.CREATED,
                f"created: {count(after.target_instance_number, 'replica')} of revision "
                f"{after.revision} on flavor {after.flavor_id}",
            )
        ]
    if after.is_deleted and not before.is_deleted:
        return [change(EndpointEventKind.DELETED, "deleted: its replicas stop")]
    found: list[EndpointChange] = []
    if after.desired_state != before.desired_state:
        stopped = "stopped: its replicas stop"
        if after.stop_reason is not None:  # moorage stopped it, not its user
            stopped = f"stopped by moorage: {after.stop_reason}; its replicas stop"
        found.append(
            change(EndpointEventKind.STOPPED, stopped)
            if after.desired_state is DesiredState.STOPPED
            else change(EndpointEventKind.STARTED, "started: its replicas start again")
        )
    if after.target_instance_number != before.target_instance_number:
        found.append(
            change(
                EndpointEventKind.SCALED,
                f"scaled from {before.target_instance_number} to "
                f"{count(after.target_instance_number, 'replica')}",
            )
        )
    # Each changed field by the name a PUT gives it, so an update names all it changed.
    changed = [
        label for label, field in _UPDATABLE if getattr(after, field) != getattr(before, field)
    ]
    if after.revision != before.revision:
        because = [label for label in changed if label in _ROLLOUT_FIELDS]
        found.append(
            change(
                EndpointEventKind.ROLLOUT_BEGUN,
                f"rollout of revision {after.revision} begun (replaces revision {before.revision})"
                + (f": {', '.join(because)} changed" if because else ""),
            )
        )
    if any(label not in _ROLLOUT_FIELDS for label in changed):
        found.append(change(EndpointEventKind.UPDATED, f"updated: {', '.join(changed)}"))
    return found


# (the field's name in a PUT body, the Endpoint attribute it sets); scaling and
# stopping have their own events.
_UPDATABLE = (
    ("name", "name"),
    ("description", "description"),
    ("payment_type", "payment_type"),
    ("resource_metadata.flavor_id", "flavor_id"),
    ("resource_metadata.scale_type", "scale_type"),
    ("resource_metadata.scale_policy", "scale_policy"),
    ("deploy_metadata", "deploy"),
    ("gateway_metadata", "gateway"),
)
# Changes that start a new revision: the rollout event names them.
_ROLLOUT_FIELDS = frozenset({"resource_metadata.flavor_id", "deploy_metadata"})
