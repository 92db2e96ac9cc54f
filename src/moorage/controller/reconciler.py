"""The reconcile loop: load, observe, plan, apply, publish routes; repeat.

Level-triggered: each pass looks at the whole picture, so a missed wake-up or a
crash between two steps is repaired by the next pass. Woken early by API
writes; otherwise runs every ``interval_s``. All store access runs in worker
threads so the event loop (shared with the gateway) never blocks on a query.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from moorage import lifecycle
from moorage.clock import Clock
from moorage.controller.cluster_capacity import CapacitySync
from moorage.controller.gpu_placement import free_gpus, gpus_for, release_finished
from moorage.controller.idle_routes import IdleRoutes
from moorage.controller.launch_secrets import registry_auth_for, secrets_for
from moorage.controller.plan import (
    Action,
    AdoptReplica,
    CreateReplica,
    MarkFailed,
    MarkReady,
    MarkUnready,
    PlanPolicy,
    ReapOrphan,
    RollBack,
    StartReplica,
    StopReplica,
    plan,
    probe_verdicts,
    probes_due,
)
from moorage.controller.probe import HttpProbe, ProbeScheduler
from moorage.controller.startup_watch import StartupWatcher
from moorage.controller.surge_room import load_surge_room
from moorage.controller.tasks import cancel_all
from moorage.models.downtime import failed_while_down_at
from moorage.models.endpoints import Endpoint
from moorage.models.events import EndpointChange
from moorage.models.quotas import Quotas
from moorage.models.replicas import (
    FailureReason,
    Replica,
    ReplicaEvent,
    ReplicaEventKind,
    ReplicaState,
    StartupWatch,
)
from moorage.models.states import EndpointEventKind
from moorage.routing.table import RouteTable, build_route_table
from moorage.runtimes.base import Launch, Observed, Runtime, StartError, StartPending
from moorage.secretbox import SecretBox
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.events import EventRepository
from moorage.store.flavors import FlavorRepository
from moorage.store.heartbeats import CONTROLLER, beat, last_heartbeat
from moorage.store.leases import Deposed
from moorage.store.rates import billed_until
from moorage.store.replicas import ReplicaRepository
from moorage.wire import new_id

log = logging.getLogger(__name__)

# The heartbeat is written at most this often: one small UPDATE, whatever the load.
HEARTBEAT_EVERY = timedelta(seconds=1)


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
        in_flight: Callable[[str], int] = lambda _replica_id: 0,
        drain_timeout_s: float = 30.0,
        secret_box: SecretBox | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.db = db
        # The default quotas: a rollout's surge stays within each owner's (None: unbound).
        self.quotas = quotas
        # Decrypts the secrets a replica names, as it starts (launch_secrets.py).
        self.secret_box = secret_box
        self.runtime = runtime
        self.clock = clock
        self.policy = policy
        self.publish_routes = publish_routes
        self.interval_s = interval_s
        self.probes = ProbeScheduler(HttpProbe(), clock)
        self.startup = StartupWatcher(runtime)
        self.capacity = CapacitySync(db, runtime, clock)
        self.idle_routes = IdleRoutes()
        # The last failure logged per replica: a start that fails the same way on every
        # retry is said once, not once per backoff.
        self._logged_failures: dict[str, str] = {}
        # One rollout's end is decided at a time (stops finish in parallel threads).
        self._rollout_end = threading.Lock()
        self.in_flight = in_flight
        self.drain_timeout_s = drain_timeout_s
        # Replicas being drained and stopped in the background, by id.
        self._stopping: dict[str, asyncio.Task[None]] = {}
        # The first pass says which running replicas an earlier life left (adopted).
        self._first_pass = True
        # The previous run's last heartbeat, during the first pass only: replicas found
        # gone then died while moorage was down, and are closed there.
        self._down_since: datetime | None = None
        self._last_beat: datetime | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Asks for a pass soon (the store changed); safe to call from any thread."""
        self.idle_routes.changed()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.reconcile_once()
        self._task = asyncio.create_task(self._run(), name="moorage-reconciler")

    def lead(self) -> None:
        """Starts the loop, its first pass at once, for a controller that just became
        the leader (``controller/leader.py``); a failed first pass is retried as any."""
        self._loop = asyncio.get_running_loop()
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="moorage-reconciler")

    async def abandon(self) -> None:
        """Ends the loop and what it started (probes, start-up watches, drains) at once,
        stopping no replica and recording nothing: the controller is no longer the
        leader, and the next one adopts the replicas as they are."""
        tasks = [*([self._task] if self._task is not None else []), *self._stopping.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Deposed):
                await task
        self._task = None
        self._stopping.clear()
        await self.probes.close()
        await self.startup.close()

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
        try:
            seen_at = await self._pass()
        finally:
            self._down_since = None  # the first pass's failures alone died while down
        await self._beat(seen_at)
        await self.capacity.maybe()

    async def _pass(self) -> datetime:
        """One pass; answers when it saw the runtime: every replica the store calls
        running was running then, or is recorded failed now."""
        if self._first_pass:  # GPUs of replicas stopped just before a crash
            await asyncio.to_thread(release_finished, self.db)
            # Read before this run writes its own heartbeat.
            self._down_since = await asyncio.to_thread(self._read_heartbeat)
        snapshot = await asyncio.to_thread(self._load)
        seen_at = self.clock.now()
        observed = await self.runtime.observe()
        if self._first_pass:
            self._first_pass = False
            _say_adopted(snapshot.replicas, observed)
        now = self.clock.now()
        results, failures = probe_verdicts(snapshot.replicas, self.probes.results())
        self._start_probes(snapshot, observed, now)
        watched = self.startup.changes(snapshot.replicas, self.probes.results(), now)
        if watched:
            await asyncio.to_thread(self._save_startup, watched)
        free = await asyncio.to_thread(free_gpus, self.db)
        room = (
            await asyncio.to_thread(
                load_surge_room, self.db, self.quotas, snapshot.endpoints, snapshot.replicas
            )
            if self.quotas is not None
            else {}
        )
        actions = plan(
            snapshot.endpoints,
            snapshot.replicas,
            observed,
            results,
            now,
            self.policy,
            failures,
            free_gpus=free,
            surge_room=room,
            gpu_flavors=frozenset(free),
        )
        # A replica being stopped in the background is that task's alone; a pass that
        # loaded it before the stop was recorded must not also fail or restart it.
        actions = [a for a in actions if _replica_id(a) not in self._stopping]
        leaving = frozenset(
            a.replica.replica_id
            for a in actions
            if isinstance(a, StopReplica | MarkFailed | MarkUnready)
        ) | frozenset(self._stopping)
        # Replicas that turned ready join the rotation first, and those that are going
        # leave it, before anything is stopped: a rollout never has a moment with no
        # replica to route to, and no new request reaches a replica that is going.
        joining = [a for a in actions if isinstance(a, MarkReady)]
        if joining:  # the gateway first: whoever reads `available` is served
            self.publish_routes(
                snapshot.routes.with_ready([a.replica for a in joining]).without(leaving)
            )
        await self._apply_all(joining)
        if joining or leaving:
            await self.publish(also_without=leaving)
        rest = [a for a in actions if not isinstance(a, MarkReady)]
        await self._apply_all(rest)
        if joining or leaving or rest:
            await self.publish(also_without=frozenset(self._stopping))
        else:  # nothing was done and nothing is stopping: the load is still the truth
            self.publish_routes(snapshot.routes)
        return seen_at

    def _read_heartbeat(self) -> datetime | None:
        with self.db.session() as session:
            return last_heartbeat(session, CONTROLLER)

    async def _beat(self, seen_at: datetime) -> None:
        """Writes moorage's last sign of life, at most once every HEARTBEAT_EVERY."""
        last = self._last_beat
        if last is not None and last <= seen_at < last + HEARTBEAT_EVERY:
            return
        self._last_beat = seen_at

        def write() -> None:
            with self.db.session() as session:
                beat(session, CONTROLLER, seen_at)

        await asyncio.to_thread(write)

    def _failure_moment(self, replica: Replica, reason: FailureReason, now: datetime) -> datetime:
        """When a failure found now is recorded: now, except for a replica the first
        pass after a restart found gone, closed at the previous run's last heartbeat
        (``models/downtime.py``)."""
        if self._down_since is None or reason is not FailureReason.EXITED:
            return now
        with self.db.session() as session:
            closed = billed_until(session, replica.replica_id)
        return failed_while_down_at(self._down_since, replica.state_since, closed, now)

    def _start_probes(
        self, snapshot: _Snapshot, observed: Mapping[str, Observed], now: datetime
    ) -> None:
        """Starts the probes that are due, as tasks: the pass never waits for one."""
        probed = [r for r in snapshot.replicas if r.state.has_process]
        self.probes.retain(r.replica_id for r in probed)
        live = {r.replica_id for r in snapshot.replicas}
        for gone in [k for k in self._logged_failures if k not in live]:
            del self._logged_failures[gone]
        endpoints = {e.service_id: e for e in snapshot.endpoints}
        due = probes_due(
            endpoints,
            probed,
            observed,
            self.probes.last_started(),
            self.probes.in_flight(),
            now,
        )
        self.probes.start(due, now)

    async def _apply_all(self, actions: Sequence[Action]) -> None:
        for action in actions:
            try:
                await self._apply(action)
            except Exception:
                log.exception("applying %s failed; the next pass retries", type(action).__name__)

    async def publish(self, also_without: frozenset[str] = frozenset()) -> None:
        routes = (await asyncio.to_thread(self._load)).routes
        self.publish_routes(routes.without(also_without) if also_without else routes)

    def _load(self) -> _Snapshot:
        """Endpoints that want replicas or still have some, their live replicas, and the
        route table. Endpoints that want none and have none (stopped) are not loaded:
        their route entries come from ``idle_routes``, reloaded only on a change."""
        with self.db.session() as session:
            replicas = ReplicaRepository(session).live()
            repository = EndpointRepository(session)
            endpoints = {e.service_id: e for e in repository.list_wanting_replicas()}
            # Stopped or deleted endpoints whose replicas still run need planning too.
            missing = {r.endpoint_id for r in replicas} - endpoints.keys()
            for endpoint in repository.get_many(sorted(missing)):
                endpoints[endpoint.service_id] = endpoint
            tokens = AccountRepository(session).active_token_hashes()
            idle = self.idle_routes.routes(repository, tokens)
        active = build_route_table(
            list(endpoints.values()), replicas, tokens, self.policy.crash_loop_threshold
        )
        routes = RouteTable(
            MappingProxyType({**idle, **active.endpoints}), active.known_token_hashes
        )
        return _Snapshot(list(endpoints.values()), replicas, routes)

    def _record(self, event: ReplicaEvent, log_it: bool = True) -> None:
        """Records the event, then logs it (one line per event a person should see)."""
        with self.db.session() as session:
            revision = ReplicaRepository(session).record(event)
        if log_it and revision is not None:
            lifecycle.replica(event, revision)

    async def _record_async(
        self,
        replica_id: str,
        endpoint_id: str,
        kind: ReplicaEventKind,
        *,
        address: str | None = None,
        reason: FailureReason | None = None,
        detail: str | None = None,
        log_it: bool = True,
        at: datetime | None = None,
    ) -> None:
        when = at if at is not None else self.clock.now()
        event = ReplicaEvent(replica_id, endpoint_id, kind, when, address, reason, detail)
        await asyncio.to_thread(self._record, event, log_it)

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
                # A rollout begun with no replica running (stopped, or scaled to zero)
                # has none to replace: it ends when its first replica is ready.
                await asyncio.to_thread(self._log_rollout_finished, replica, True)
            case MarkFailed(replica, reason, detail):
                await self.runtime.stop(replica.replica_id)
                now = self.clock.now()
                at = await asyncio.to_thread(self._failure_moment, replica, reason, now)
                if at != now:
                    detail = _while_down(detail, at, now)
                await self._record_async(
                    replica.replica_id,
                    replica.endpoint_id,
                    ReplicaEventKind.FAILED,
                    reason=reason,
                    detail=detail,
                    at=at,
                )
            case MarkUnready(replica):
                await self._record_async(
                    replica.replica_id,
                    replica.endpoint_id,
                    ReplicaEventKind.UNREADY,
                    detail=f"failed a readiness probe: {self._probe_detail(replica.replica_id)}",
                )
            case StopReplica(replica, why):
                if replica.replica_id not in self._stopping:
                    self._stopping[replica.replica_id] = asyncio.create_task(
                        self._drain_and_stop(replica, why)
                    )
            case RollBack():
                await asyncio.to_thread(self._roll_back, action)
            case ReapOrphan(replica_id):
                log.info("stopping replica %s that no endpoint owns", replica_id)
                await self.runtime.stop(replica_id)

    def _probe_detail(self, replica_id: str) -> str:
        record = self.probes.results().get(replica_id)
        return record.detail if record is not None else "no probe result"

    async def _drain_and_stop(self, replica: Replica, why: str) -> None:
        """Lets requests already sent to the replica finish (it is out of rotation),
        then stops it and records why."""
        try:
            if replica.state is ReplicaState.READY:  # no longer counts as serving
                await self._record_async(
                    replica.replica_id,
                    replica.endpoint_id,
                    ReplicaEventKind.UNREADY,
                    detail=f"stopping: {why}",
                )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.drain_timeout_s
            while self.in_flight(replica.replica_id) and loop.time() < deadline:
                await asyncio.sleep(0.05)
            await self.runtime.stop(replica.replica_id)
            await self._record_async(
                replica.replica_id, replica.endpoint_id, ReplicaEventKind.STOPPED, detail=why
            )
            await asyncio.to_thread(self._log_rollout_finished, replica)
        except Exception:
            log.exception("stopping replica %s failed; the next pass retries", replica.replica_id)
        finally:
            self._stopping.pop(replica.replica_id, None)

    def _roll_back(self, action: RollBack) -> None:
        with self.db.session() as session:
            repository = EndpointRepository(session)
            current = repository.get_live(action.endpoint.service_id)
            good = repository.revision(action.endpoint.service_id, action.to_revision)
            if current is None or good is None or current.revision != action.endpoint.revision:
                return  # the user changed the endpoint meanwhile: their change wins
            flavor_id, deploy = good
            note = (
                f"revision {current.revision} could not run and was rolled back to revision "
                f"{action.to_revision}, which keeps serving: {action.reason}. Fix "
                "deploy_metadata and PUT it again (`moorage endpoints update`)."
            )
            now = self.clock.now()
            repository.save(
                dataclasses.replace(
                    current,
                    revision=action.to_revision,
                    flavor_id=flavor_id,
                    deploy=deploy,
                    rollout_note=note,
                    updated_at=now,
                )
            )
            change = EndpointChange(
                current.service_id, EndpointEventKind.ROLLED_BACK, now, action.to_revision, note
            )
            EventRepository(session).record(change)
        lifecycle.endpoint(change, current.name)

    def _log_rollout_finished(self, replica: Replica, ready: bool = False) -> None:
        """Records and logs a rollout's end once the last replica of other revisions has
        stopped (the replicas it replaced stop in parallel: only the last one does), or,
        when none was left to replace, once a replica of the new revision is ready.
        The store says whether it is already recorded, so a controller restarted
        mid-rollout, whose earlier self's stops may still finish, records it once."""
        with self._rollout_end, self.db.session() as session:
            endpoint = EndpointRepository(session).get_live(replica.endpoint_id)
            if endpoint is None:
                return
            if ready and (replica.revision != endpoint.revision or endpoint.revision <= 1):
                return
            if not ready and replica.revision >= endpoint.revision:
                return
            live = ReplicaRepository(session).live([endpoint.service_id])
            if any(r.revision != endpoint.revision for r in live):
                return
            change = EndpointChange(
                endpoint.service_id,
                EndpointEventKind.ROLLOUT_FINISHED,
                self.clock.now(),
                endpoint.revision,
                f"rollout of revision {endpoint.revision} finished: every replica runs it",
            )
            if not EventRepository(session).record_once(change):
                return
        lifecycle.endpoint(change, endpoint.name)

    def _save_startup(self, watched: Mapping[str, StartupWatch]) -> None:
        with self.db.session() as session:
            replicas = ReplicaRepository(session)
            for replica_id, watch in watched.items():
                replicas.set_startup(replica_id, watch)

    def _set_progress(self, replica_id: str, progress: str | None) -> None:
        with self.db.session() as session:
            ReplicaRepository(session).set_progress(replica_id, progress)

    def _create(self, replica_id: str, endpoint: Endpoint) -> None:
        with self.db.session() as session:
            ReplicaRepository(session).create(
                replica_id, endpoint.service_id, endpoint.revision, self.clock.now()
            )

    def _owner_is_admin(self, user_id: str) -> bool:
        """The admin is trusted; every other owner's replicas run sandboxed."""
        with self.db.session() as session:
            owner = AccountRepository(session).user_by_id(user_id)
        return owner is not None and owner.is_admin

    def _flavor_key(self, flavor_id: str) -> str:
        """The flavor's key, which the ``ray`` runtime places replicas by."""
        with self.db.session() as session:
            stored = FlavorRepository(session).get(flavor_id)
        return stored.flavor.cluster_flavor_id if stored is not None else ""

    async def _launch(self, endpoint: Endpoint, replica_id: str) -> None:
        gpus = await asyncio.to_thread(gpus_for, self.db, endpoint, replica_id, self.clock.now())
        if gpus is None:
            return  # waiting for GPUs; a later pass tries again, oldest first
        trusted = await asyncio.to_thread(self._owner_is_admin, endpoint.user_id)
        try:
            secrets = await asyncio.to_thread(secrets_for, self.db, self.secret_box, endpoint)
            auth = await asyncio.to_thread(registry_auth_for, self.db, self.secret_box, endpoint)
        except StartError as exc:
            await self._start_failed(endpoint, replica_id, str(exc))
            return
        launch = Launch(
            replica_id,
            endpoint.service_id,
            endpoint.revision,
            endpoint.deploy,
            sandboxed=not trusted,
            user_id=endpoint.user_id,
            gpus=gpus,
            secrets=secrets,
            registry_auth=auth,
            flavor_key=await asyncio.to_thread(self._flavor_key, endpoint.flavor_id),
        )
        try:
            address = await self.runtime.start(launch)
        except StartPending as pending:
            await asyncio.to_thread(self._set_progress, replica_id, pending.progress)
            return
        except StartError as exc:
            await self._start_failed(endpoint, replica_id, str(exc))
            return
        except Exception as exc:  # whatever else: this replica's failure, not the loop's
            await self._start_failed(
                endpoint, replica_id, f"the runtime could not start it: {_describe(exc)}"
            )
            return
        self._logged_failures.pop(replica_id, None)
        await self._record_async(
            replica_id, endpoint.service_id, ReplicaEventKind.STARTED, address=address
        )

    async def _start_failed(self, endpoint: Endpoint, replica_id: str, detail: str) -> None:
        """Records the failure (the endpoint shows it, and the replica is retried with
        backoff) and logs it once, not again while each retry fails the same way."""
        repeated = self._logged_failures.get(replica_id) == detail
        self._logged_failures[replica_id] = detail
        await self._record_async(
            replica_id,
            endpoint.service_id,
            ReplicaEventKind.FAILED,
            reason=FailureReason.START_ERROR,
            detail=detail,
            log_it=not repeated,
        )

    async def shutdown(self) -> None:
        """Stops the loop, then every replica, recording why, so nothing outlives moorage."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await cancel_all(self._stopping.values())
        snapshot = await asyncio.to_thread(self._load)
        # Out of rotation before they stop; the endpoints stay known, so callers get
        # 503 with Retry-After (come back soon), not 404 (no such endpoint).
        self.publish_routes(
            snapshot.routes.without(frozenset(r.replica_id for r in snapshot.replicas))
        )
        await asyncio.gather(*(self._stop_for_shutdown(r) for r in snapshot.replicas))
        observed = await self.runtime.observe()
        await asyncio.gather(*(self.runtime.stop(rid) for rid in observed))
        await self.probes.close()
        await self.startup.close()
        await self.runtime.close()

    async def _stop_for_shutdown(self, replica: Replica) -> None:
        await self.runtime.stop(replica.replica_id)
        await self._record_async(
            replica.replica_id,
            replica.endpoint_id,
            ReplicaEventKind.STOPPED,
            detail="moorage stopped",
        )


# Live states a restarted controller keeps a running replica in, unchanged.
_KEPT = frozenset({ReplicaState.STARTING, ReplicaState.READY, ReplicaState.UNREADY})


def _say_adopted(replicas: Sequence[Replica], observed: Mapping[str, Observed]) -> None:
    """One line per replica the store says is live and the runtime sees running: an
    earlier moorage started it and this one carries on with it. (Replicas adopted from
    ``requested`` or ``failed`` get a recorded ``started`` event instead, by the plan.)"""
    for replica in replicas:
        seen = observed.get(replica.replica_id)
        if replica.state in _KEPT and seen is not None and seen.running:
            lifecycle.adopted(replica)


def _while_down(detail: str, at: datetime, now: datetime) -> str:
    """The failure's detail, saying it is dated at moorage's last sign of life and
    when it was found (the event's time is the former)."""
    return (
        f"{detail}; it stopped while moorage was down, after {_utc(at)} (moorage's last "
        f"sign of life, where its billing ends); found at {_utc(now)}"
    )


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(exc: Exception) -> str:
    """An exception as one short line a user can read (no traceback)."""
    text = " ".join(str(exc).split()) or "no detail"
    return f"{type(exc).__name__}: {text}"[:500]


def _replica_id(action: Action) -> str | None:
    replica = getattr(action, "replica", None)
    return replica.replica_id if isinstance(replica, Replica) else None
