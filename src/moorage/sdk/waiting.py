"""When waiting for an endpoint is over: pure, from one reading of it.

An endpoint is ready for its user when its status is ``available`` and as many
replicas of its current revision are ready as it wants: a rollout that left the old
revision serving is not done yet. Waiting cannot succeed, and stops at once, when a
replica cannot run (``unavailable``), when the revision waited for was rolled back,
or when the endpoint was stopped or deleted meanwhile; the reason is the server's
own ``status_info``.
"""

from __future__ import annotations

from dataclasses import dataclass

from moorage.api.schemas import Endpoint
from moorage.models.states import EndpointStatus, ReplicaState


@dataclass(frozen=True)
class Progress:
    """One reading: what a progress line shows, and whether the wait is over."""

    status: str
    ready: int  # replicas of the current revision that are ready
    wanted: int
    info: str | None
    done: bool = False
    failure: str | None = None


def progress(endpoint: Endpoint, revision: int | None = None) -> Progress:
    """``revision``: the one the caller made (a PUT's answer); None for any."""
    current = endpoint.deploy_metadata.revision
    ready = sum(
        1
        for replica in endpoint.endpoint_metadata.replicas
        if replica.state is ReplicaState.READY and replica.revision == current
    )
    wanted = endpoint.resource_metadata.target_instance_number
    seen = Progress(endpoint.status.value, ready, wanted, endpoint.status_info)
    failure = _failure(endpoint, revision)
    if failure is not None:
        return Progress(seen.status, ready, wanted, seen.info, failure=failure)
    done = endpoint.status is EndpointStatus.AVAILABLE and ready >= wanted
    return Progress(seen.status, ready, wanted, seen.info, done=done)


def _failure(endpoint: Endpoint, revision: int | None) -> str | None:
    info = endpoint.status_info or "no reason given"
    name = f"endpoint {endpoint.name} ({endpoint.service_id})"
    if endpoint.is_deleted:
        return f"{name} was deleted while waiting"
    if endpoint.status is EndpointStatus.STOPPED:
        return f"{name} is stopped: {info}"
    if revision is not None and endpoint.deploy_metadata.revision < revision:
        return f"{name}: revision {revision} was rolled back: {info}"
    if endpoint.status is EndpointStatus.UNAVAILABLE:
        return f"{name} cannot run: {info}"
    return None


def describe(seen: Progress) -> str:
    """``initializing, 1/2 ready: pulling image: 45%``: the line a waiting client shows."""
    line = f"{seen.status}, {seen.ready}/{seen.wanted} ready"
    return f"{line}: {seen.info}" if seen.info else line
