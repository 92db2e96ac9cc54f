"""The reconcile loop: load, observe, plan, apply, publish routes; repeat.

Level-triggered: each pass looks at the whole picture, so a missed wake-up or a
crash between two steps is repaired by the next pass. Woken early by API
writes; otherwise runs every ``interval_s``. All store access runs in worker
threads so the event loop (shared with the gateway) never blocks on a query.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from moorage.clock import Clock
from moorage.controller.plan import (
    Action,
    AdoptReplica,
    CreateReplica,
    MarkFailed,
    MarkReady,
    PlanPolicy,
    ReapOrphan,
    StartReplica,
    StopReplica,
    plan,
)
from moorage.controller.probe import ReadinessProber
from moorage.gateway.routes import RouteTable, build_route_table
from moorage.models.endpoints import Endpoint
from moorage.models.replicas import (
    FailureReason,
    Replica,
    ReplicaEvent,
    ReplicaEventKind,
    ReplicaState,
)
from moorage.runtimes.base import Launch, Runtime, StartError, StartPending
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.replicas import ReplicaRepository
from moorage.wire import new_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Snapshot:
    endpoints: Sequence[Endpoint]
    replicas: Sequence[Replica]
    routes: RouteTable


class Reconciler:
    def __init__(
        self,
        db: Database,
        runtime: Runtime,
        clock: Clock,
        policy: PlanPolicy,
        publish_routes: Callable[[RouteTable], None],
        *,
        interval_s: float = 1.0,
    ) -> None:
        self.db = db
        self.runtime = runtime
        self.clock = clock
        self.policy = policy
        self.publish_routes = publish_routes
        self.interval_s = interval_s
        self.prober = ReadinessProber()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Asks for a pass soon; safe to call from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.reconcile_once()
        self._task = asyncio.create_task(self._run(), name="moorage-reconciler")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval_s)
            self._wake.clear()
            try:
                await self.reconcile_once()
            except Exception:  # one bad pass must not end the loop
                log.exception("reconcile pass failed; retrying")

    async def reconcile_once(self) -> None:
        snapshot = await asyncio.to_thread(self._load)
        observed = await self.runtime.observe()
        to_probe = {
            r.replica_id: observed[r.replica_id].address or ""
            for r in snapshot.replicas
            if r.state is ReplicaState.STARTING
            and r.replica_id in observed
            and observed[r.replica_id].running
            and observed[r.replica_id].address
        }
        probes = await self.prober.probe_all(to_probe)
        actions = plan(
            snapshot.endpoints, snapshot.replicas, observed, probes, self.clock.now(), self.policy
        )
        leaving = frozenset(
            a.replica.replica_id for a in actions if isinstance(a, StopReplica | MarkFailed)
        )
        # Out of rotation first, so no request is sent to a replica being stopped.
        self.publish_routes(snapshot.routes.without(leaving))
        for action in actions:
            try:
                await self._apply(action)
            except Exception:
                log.exception("applying %s failed; the next pass retries", type(action).__name__)
        await self.publish()

    async def publish(self) -> None:
        self.publish_routes((await asyncio.to_thread(self._load)).routes)

    def _load(self) -> _Snapshot:
        with self.db.session() as session:
            replicas = ReplicaRepository(session).live()
            endpoints = {e.service_id: e for e in EndpointRepository(session).list_all_live()}
            tokens = AccountRepository(session).active_token_hashes()
            routes = build_route_table(list(endpoints.values()), replicas, tokens)
            # Deleted endpoints whose replicas still run need planning too.
            missing = {r.endpoint_id for r in replicas} - endpoints.keys()
            for endpoint in EndpointRepository(session).get_many(sorted(missing)):
                endpoints[endpoint.service_id] = endpoint
        return _Snapshot(list(endpoints.values()), replicas, routes)

    def _record(self, event: ReplicaEvent) -> None:
        with self.db.session() as session:
            ReplicaRepository(session).record(event)

    async def _record_async(
        self,
        replica_id: str,
        endpoint_id: str,
        kind: ReplicaEventKind,
        *,
        address: str | None = None,
        reason: FailureReason | None = None,
        detail: str | None = None,
    ) -> None:
        event = ReplicaEvent(
            replica_id, endpoint_id, kind, self.clock.now(), address, reason, detail
        )
        await asyncio.to_thread(self._record, event)

    async def _apply(self, action: Action) -> None:
        match action:
            case CreateReplica(endpoint):
                replica_id = new_id()
                await asyncio.to_thread(self._create, replica_id, endpoint)
                await self._launch(endpoint, replica_id)
            case StartReplica(endpoint, replica):
                await self._launch(endpoint, replica.replica_id)
            case AdoptReplica(replica, address):
                await self._record_async(
                    replica.replica_id,
                    replica.endpoint_id,
                    ReplicaEventKind.STARTED,
                    address=address,
                    detail="adopted",
                )
            case MarkReady(replica):
                await self._record_async(
                    replica.replica_id, replica.endpoint_id, ReplicaEventKind.READY
                )
            case MarkFailed(replica, reason, detail):
                await self.runtime.stop(replica.replica_id)
                await self._record_async(
                    replica.replica_id,
                    replica.endpoint_id,
                    ReplicaEventKind.FAILED,
                    reason=reason,
                    detail=detail,
                )
            case StopReplica(replica, why):
                await self.runtime.stop(replica.replica_id)
                await self._record_async(
                    replica.replica_id, replica.endpoint_id, ReplicaEventKind.STOPPED, detail=why
                )
            case ReapOrphan(replica_id):
                log.info("stopping replica %s that no endpoint owns", replica_id)
                await self.runtime.stop(replica_id)

    def _set_progress(self, replica_id: str, progress: str | None) -> None:
        with self.db.session() as session:
            ReplicaRepository(session).set_progress(replica_id, progress)

    def _create(self, replica_id: str, endpoint: Endpoint) -> None:
        with self.db.session() as session:
            ReplicaRepository(session).create(
                replica_id, endpoint.service_id, endpoint.revision, self.clock.now()
            )

    async def _launch(self, endpoint: Endpoint, replica_id: str) -> None:
        launch = Launch(replica_id, endpoint.service_id, endpoint.revision, endpoint.deploy)
        try:
            address = await self.runtime.start(launch)
        except StartPending as pending:
            await asyncio.to_thread(self._set_progress, replica_id, pending.progress)
            return
        except StartError as exc:
            await self._record_async(
                replica_id,
                endpoint.service_id,
                ReplicaEventKind.FAILED,
                reason=FailureReason.START_ERROR,
                detail=str(exc),
            )
            return
        await self._record_async(
            replica_id, endpoint.service_id, ReplicaEventKind.STARTED, address=address
        )

    async def shutdown(self) -> None:
        """Stops the loop, then every replica, recording why, so nothing outlives moorage."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.publish_routes(RouteTable.empty())
        snapshot = await asyncio.to_thread(self._load)
        await asyncio.gather(*(self._stop_for_shutdown(r) for r in snapshot.replicas))
        observed = await self.runtime.observe()
        await asyncio.gather(*(self.runtime.stop(rid) for rid in observed))
        await self.prober.close()
        await self.runtime.close()

    async def _stop_for_shutdown(self, replica: Replica) -> None:
        await self.runtime.stop(replica.replica_id)
        await self._record_async(
            replica.replica_id,
            replica.endpoint_id,
            ReplicaEventKind.STOPPED,
            detail="moorage stopped",
        )
