"""What a replica that is not serving yet is doing, in words, with how long it has lasted.

An endpoint that stays ``initializing`` must say why: an image still pulling, an app
that has not opened its port yet, an app that listens on another port than the one
it was given (the usual first mistake), or an app that answers its probe with 503
while its model loads. The controller records what it saw (``StartupWatch``, written
to the store only when it changes); this module turns that into ``status_info``.

Pure: the caller passes the clock's ``now``, so the same facts always read the same,
and tests use a fake clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from moorage.models.replicas import Replica, ReplicaState

# Probe details that mean no connection reached an app (``controller/probe.py``'s
# words). While the app does not listen on its port, they all mean it is still
# starting: a sandboxed replica's bridge accepts and then closes, which the probe
# reads as a close, a reset or a broken pipe depending on timing, and each of those
# must read the same, as waiting, with one steady duration.
_NO_CONNECTION = (
    "cannot connect",
    "closed the connection without answering",
    "connection failed",
)


def startup_note(replicas: Iterable[Replica], now: datetime | None, timeout_s: float) -> str | None:
    """The phase of the replica that says the most: a wrong port first (it will never
    become ready by itself), then the first replica, in order, that is not ready.
    ``timeout_s`` is how long a started replica may take to pass its first probe."""
    waiting = [r for r in replicas if r.state is not ReplicaState.READY]
    wrong = [r for r in waiting if r.state is ReplicaState.STARTING and _never_ready(r)]
    for replica in wrong or waiting:
        note = _phase(replica, now, timeout_s)
        if note is not None:
            return note
    return None


def _phase(replica: Replica, now: datetime | None, timeout_s: float) -> str | None:
    lasted = _since(replica.state_since, now)
    if replica.state is ReplicaState.REQUESTED:
        if replica.progress:
            return f"{replica.progress}{_paren(lasted)}"
        return f"starting replica {replica.replica_id}{_paren(lasted)}"
    if replica.state is ReplicaState.FAILED:
        return f"replica {replica.replica_id} failed and is restarted: {replica.last_failure}"
    if replica.state is not ReplicaState.STARTING:
        return None
    watch = replica.startup
    port = f"port {watch.given_port} ($PORT)" if watch.given_port else "$PORT"
    limit = f"; it fails {_duration(timeout_s)} after starting (readiness_probe.startup_timeout_s)"
    if watch.wrong_port:
        ports = ", ".join(str(p) for p in sorted(watch.listening or ()))
        return (
            f"the app listens on {ports}, not on $PORT {watch.given_port}: start it on "
            "$PORT (deploy_metadata.command), or it fails after "
            f"{_duration(timeout_s)} without serving"
        )
    if watch.unreachable:
        return (
            f"the app listens on {watch.unreachable} inside its container, where nothing "
            "outside it can reach: bind 0.0.0.0 (all addresses) on $PORT "
            f"(deploy_metadata.command), or it fails after {_duration(timeout_s)} "
            "without serving"
        )
    listens = watch.listening is not None and watch.given_port in watch.listening
    unconnected = watch.probe is None or watch.probe.split(": ", 1)[-1].startswith(_NO_CONNECTION)
    if unconnected and listens:
        # Just opened (the ports are read once a second, the probe on its own period),
        # or accepting and dropping connections: either way timed from its start.
        wait = f"it to accept a probe (last: {watch.probe})" if watch.probe else "its first probe"
        return f"the app listens on {port}; waiting for {wait}{_paren(lasted)}{limit}"
    if unconnected:
        return f"waiting for the app to listen on {port}{_paren(lasted)}{limit}"
    probing = _since(watch.probe_since, now) if watch.probe_since else None
    held = f" for {probing}" if probing else ""
    return f"probing: {watch.probe}{held}{limit}"


def _never_ready(replica: Replica) -> bool:
    """Listening where it will never be probed: it will not become ready by itself."""
    return replica.startup.wrong_port or replica.startup.unreachable is not None


def _since(then: datetime, now: datetime | None) -> str | None:
    if now is None:
        return None
    return _duration(max(0.0, (now - then).total_seconds()))


def _paren(lasted: str | None) -> str:
    return f" ({lasted})" if lasted else ""


def _duration(seconds: float) -> str:
    """Seconds as a person reads them: "42 s", "3 min", "2 h"."""
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 120 * 60:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds // 3600)} h"
