"""One log line per thing that happens to an endpoint or a replica, at INFO or above.

All lines come from the ``moorage.lifecycle`` logger and carry their ids as
fields (``endpoint_id``, ``replica_id``, ``revision``, ``event``), which the
JSON format (``logformat``) writes out. Probes and requests have no line here:
a person reading the log sees what changed, not what was checked.
"""

from __future__ import annotations

import logging

from moorage.models.endpoints import Endpoint
from moorage.models.events import describe
from moorage.models.replicas import ReplicaEvent, ReplicaEventKind

log = logging.getLogger("moorage.lifecycle")

# Lines a replica's event gets; ``requested`` is followed at once by ``started``.
_REPLICA_LEVELS = {
    ReplicaEventKind.STARTED: logging.INFO,
    ReplicaEventKind.READY: logging.INFO,
    ReplicaEventKind.UNREADY: logging.WARNING,
    ReplicaEventKind.FAILED: logging.WARNING,
    ReplicaEventKind.STOPPED: logging.INFO,
}


def endpoint(subject: Endpoint, event: str, message: str) -> None:
    """``event`` (created, scaled, updated, stopped, started, deleted) happened to it."""
    log.info(
        "endpoint %s (%s) %s",
        subject.service_id,
        subject.name,
        message,
        extra={
            "event": f"endpoint.{event}",
            "endpoint_id": subject.service_id,
            "revision": subject.revision,
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


def rollout(
    endpoint_id: str, revision: int, event: str, message: str, level: int = logging.INFO
) -> None:
    """A rollout ``begun``, ``finished``, or ``rolled_back`` (to ``revision``)."""
    log.log(
        level,
        "endpoint %s: %s",
        endpoint_id,
        message,
        extra={"event": f"rollout.{event}", "endpoint_id": endpoint_id, "revision": revision},
    )


def created(subject: Endpoint) -> None:
    endpoint(
        subject,
        "created",
        f"created: {subject.target_instance_number} replica(s) of revision "
        f"{subject.revision} on flavor {subject.flavor_id}",
    )


def changed(before: Endpoint, after: Endpoint) -> None:
    """The lines one accepted PUT gets: scaled, a rollout begun, other fields updated."""
    if after.target_instance_number != before.target_instance_number:
        endpoint(
            after,
            "scaled",
            f"scaled from {before.target_instance_number} to "
            f"{after.target_instance_number} replica(s)",
        )
    if after.revision != before.revision:
        rollout(
            after.service_id,
            after.revision,
            "begun",
            f"rollout of revision {after.revision} begun (replaces revision {before.revision})",
        )
    others = [
        name
        for name in ("name", "description", "payment_type", "scale_type", "gateway")
        if getattr(after, name) != getattr(before, name)
    ]
    if others:
        endpoint(after, "updated", f"updated: {', '.join(others)}")


def running(subject: Endpoint, started: bool) -> None:
    if started:
        endpoint(subject, "started", "started: replicas will be brought back")
    else:
        endpoint(subject, "stopped", "stopped: its replicas stop")


def deleted(subject: Endpoint) -> None:
    endpoint(subject, "deleted", "deleted: its replicas stop")
