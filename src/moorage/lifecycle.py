"""One log line per thing that happens to an endpoint or a replica, at INFO or above.

All lines come from the ``moorage.lifecycle`` logger and carry their ids as
fields (``endpoint_id``, ``replica_id``, ``revision``, ``event``), which the
JSON format (``logformat``) writes out. Probes and requests have no line here:
a person reading the log sees what changed, not what was checked. The same
facts are recorded in the store and listed by ``GET .../events``
(``models.events``); this module only says them.
"""

from __future__ import annotations

import logging

from moorage.models.events import EndpointChange, describe
from moorage.models.replicas import Replica, ReplicaEvent, ReplicaEventKind
from moorage.models.states import EndpointEventKind

log = logging.getLogger("moorage.lifecycle")

# Lines a replica's event gets; ``requested`` is followed at once by ``started``.
_REPLICA_LEVELS = {
    ReplicaEventKind.STARTED: logging.INFO,
    ReplicaEventKind.READY: logging.INFO,
    ReplicaEventKind.UNREADY: logging.WARNING,
    ReplicaEventKind.FAILED: logging.WARNING,
    ReplicaEventKind.STOPPED: logging.INFO,
}

# The ``event`` field of each endpoint change: rollouts apart, for filtering.
_ENDPOINT_EVENTS = {
    EndpointEventKind.ROLLOUT_BEGUN: "rollout.begun",
    EndpointEventKind.ROLLOUT_FINISHED: "rollout.finished",
    EndpointEventKind.ROLLED_BACK: "rollout.rolled_back",
}


def endpoint(change: EndpointChange, name: str) -> None:
    """Says a change of the endpoint called ``name``; a rollback is a warning."""
    level = logging.WARNING if change.kind is EndpointEventKind.ROLLED_BACK else logging.INFO
    log.log(
        level,
        "endpoint %s (%s) %s",
        change.endpoint_id,
        name,
        change.message,
        extra={
            "event": _ENDPOINT_EVENTS.get(change.kind, f"endpoint.{change.kind.value}"),
            "endpoint_id": change.endpoint_id,
            "revision": change.revision,
        },
    )


def replica(event: ReplicaEvent, revision: int) -> None:
    level = _REPLICA_LEVELS.get(event.kind)
    if level is None:
        return
    if event.kind is ReplicaEventKind.UNREADY and (event.detail or "").startswith("stopping:"):
        level = logging.INFO  # drained on purpose before it stops, not a fault
    fields: dict[str, object] = {
        "event": f"replica.{event.kind.value}",
        "endpoint_id": event.endpoint_id,
        "replica_id": event.replica_id,
        "revision": revision,
    }
    if event.reason is not None:
        fields["reason"] = event.reason.value
    log.log(level, "endpoint %s: %s", event.endpoint_id, describe(event, revision), extra=fields)


def adopted(replica: Replica) -> None:
    """Says that a restarted moorage found ``replica`` still running and kept it as it
    was. Nothing is recorded: its state did not change, and a new ``started`` event
    would take a ready replica out of the rotation until it is probed again."""
    log.info(
        "endpoint %s: replica %s (revision %d) adopted after a restart: still running%s, kept %s",
        replica.endpoint_id,
        replica.replica_id,
        replica.revision,
        f" at {replica.address}" if replica.address else "",
        replica.state.value,
        extra={
            "event": "replica.adopted",
            "endpoint_id": replica.endpoint_id,
            "replica_id": replica.replica_id,
            "revision": replica.revision,
        },
    )
