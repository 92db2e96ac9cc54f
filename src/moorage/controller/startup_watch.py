"""What the controller sees of replicas that are starting, kept for ``status_info``.

Probe results live in the prober's memory and a replica's listening ports in
``/proc``; the API, which derives ``status_info``, reads neither, only the store.
So each pass turns what was seen into a ``StartupWatch`` per starting replica and
hands back those that changed, for the reconciler to write: a replica answering 503
for ten minutes costs one write when the answer first comes, not one per probe.

Ports are asked of the runtime only while a replica is starting and at most once a
``ports_every_s`` per replica, each ask on its own task with a deadline, so no
runtime call holds up the pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime

from moorage.controller.plan import ProbeRecord
from moorage.controller.tasks import cancel_all
from moorage.models.replicas import Replica, ReplicaState, StartupWatch
from moorage.runtimes.listening import Listening, PortWatcher

PORTS_TIMEOUT_S = 5.0


def next_watch(
    replica: Replica, record: ProbeRecord | None, listening: Listening | None
) -> StartupWatch:
    """The replica's watch after this pass: the latest probe of its current life (the
    time it first read so kept while it reads the same) and the latest ports seen."""
    seen = replica.startup
    watch = seen
    current = record is not None and record.started_at >= replica.state_since
    if current and record is not None and record.detail != seen.probe:
        watch = dataclasses.replace(watch, probe=record.detail, probe_since=record.finished_at)
    if listening is not None:
        watch = dataclasses.replace(
            watch,
            given_port=listening.given_port,
            listening=listening.ports,
            inside_only=listening.inside_only,
        )
    return watch


class StartupWatcher:
    """Asks the runtime for starting replicas' ports (when it can tell them) and
    answers the watches that changed."""

    def __init__(self, runtime: object, ports_every_s: float = 1.0) -> None:
        self._ports = runtime if isinstance(runtime, PortWatcher) else None
        self._every_s = ports_every_s
        self._asked: dict[str, datetime] = {}
        self._seen: dict[str, Listening | None] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def changes(
        self,
        replicas: Sequence[Replica],
        probes: Mapping[str, ProbeRecord],
        now: datetime,
    ) -> dict[str, StartupWatch]:
        """The watches to write; starts the port reads that are due."""
        starting = [r for r in replicas if r.state is ReplicaState.STARTING]
        keep = {r.replica_id for r in starting}
        for gone in [k for k in self._seen if k not in keep]:
            del self._seen[gone]
        for gone in [k for k in self._asked if k not in keep]:
            del self._asked[gone]
        changed: dict[str, StartupWatch] = {}
        for replica in starting:
            self._ask(replica, now)
            listening = self._seen.get(replica.replica_id)
            watch = next_watch(replica, probes.get(replica.replica_id), listening)
            if watch != replica.startup:
                changed[replica.replica_id] = watch
        return changed

    def _ask(self, replica: Replica, now: datetime) -> None:
        if self._ports is None or replica.replica_id in self._tasks:
            return
        last = self._asked.get(replica.replica_id)
        if last is not None and (now - last).total_seconds() < self._every_s:
            return
        self._asked[replica.replica_id] = now
        self._tasks[replica.replica_id] = asyncio.create_task(
            self._read(self._ports, replica.replica_id), name=f"moorage-ports-{replica.replica_id}"
        )

    async def _read(self, ports: PortWatcher, replica_id: str) -> None:
        try:
            async with asyncio.timeout(PORTS_TIMEOUT_S):
                self._seen[replica_id] = await ports.listening(replica_id)
        except Exception:  # ports are a hint: a failed read leaves the last one seen
            pass
        finally:
            self._tasks.pop(replica_id, None)

    async def close(self) -> None:
        await cancel_all(self._tasks.values())
