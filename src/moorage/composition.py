"""The composition root: every part of ``moorage serve`` built from the settings, once;
and the parts of ``moorage api`` (the same, without the controller's loops) and of
``moorage controller`` (the loops, led by one of several controllers), which run as
separate processes over one PostgreSQL (docs/deploy.md).

The reference serves the control API and the data plane from one host, so
moorage does too: the gateway's front door takes every request and passes what
is not inference traffic to the API (``runner`` binds the sockets and runs the
event loop). The API's lifespan starts the controller, as a task on the same
event loop, and the front door; it stops them, and every replica the
controller runs, when the API shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal

import anyio.to_thread
from docker.errors import DockerException
from fastapi import FastAPI

from moorage import secretbox
from moorage.api.app import create_api
from moorage.api.deps import Services
from moorage.clock import Clock, SystemClock
from moorage.controller.autoscaler import Autoscaler
from moorage.controller.budgets import BudgetEnforcer
from moorage.controller.leader import Election, ServeLease
from moorage.controller.metering import Metering
from moorage.controller.plan import PlanPolicy
from moorage.controller.reconciler import Reconciler
from moorage.errors import ErrorCode, InvalidField, MoorageError, Unavailable
from moorage.gateway.assembly import build_gateway, wire_limits
from moorage.gateway.dispatch import Dispatcher
from moorage.gateway.http1.server import freeze_startup_heap
from moorage.inventory.discovery import discover
from moorage.inventory.gpu_metrics import GpuCollector, GpuReadings
from moorage.inventory.nvml import Nvml
from moorage.models.accounts import User
from moorage.models.demand import Demand
from moorage.models.endpoints import DeploySpec
from moorage.models.leases import LeaseTerms
from moorage.models.sandbox_uids import UidRange, clash_message
from moorage.models.status import StatusPolicy
from moorage.routing.holder import RouteTableHolder
from moorage.runtimes import docker as docker_runtime
from moorage.runtimes import host_ids, logfiles
from moorage.runtimes import process as process_runtime
from moorage.runtimes.base import Runtime
from moorage.runtimes.fake import Behavior, FakeRuntime, always
from moorage.runtimes.process import ProcessRuntime
from moorage.runtimes.ray import RayRuntime, RayUnavailable
from moorage.runtimes.ray_host import HostOptions
from moorage.runtimes.sandbox import Sandbox
from moorage.services.accounts import AccountService
from moorage.services.budget_metrics import BudgetCollector, BudgetMetricsView
from moorage.services.budgets import BudgetService
from moorage.services.demand import DemandService
from moorage.services.endpoint_billing import EndpointBillingService
from moorage.services.endpoints import EndpointService
from moorage.services.flavors import FlavorService, configured_flavors
from moorage.services.gpu_metrics import GpuAllocationView
from moorage.services.logs import LogService
from moorage.services.quotas import Quotas, QuotaService
from moorage.services.registry_credentials import RegistryCredentialService
from moorage.services.routes import RouteFeed
from moorage.services.secrets import SecretService
from moorage.services.traffic import TrafficService
from moorage.services.usage import UsageService
from moorage.services.usage_metrics import UsageCollector, UsageMetricsView
from moorage.settings import Settings
from moorage.store.db import Database
from moorage.store.leases import Deposed, FencedDatabase
from moorage.store.sandbox_uids import owner_uid

log = logging.getLogger(__name__)

# The API's handlers that read the store run in worker threads (anyio's, 40 by
# default). Python runs one thread at a time, so past a few threads more only add
# hand-offs of the interpreter lock; eight let a slow store call not hold up the rest.
API_WORKER_THREADS = 8


def make_runtime(settings: Settings, owner_uids: Callable[[str], int] | None = None) -> Runtime:
    """The runtime settings ask for; ``auto`` is docker where an engine answers.
    ``owner_uids`` gives the process runtime, as root, each owner's own uid."""
    if settings.runtime == "fake":
        delay = settings.fake_start_delay_s
        return FakeRuntime(script=always(Behavior(delay_s=delay)), serve="shared")
    if settings.resolved_runtime == "ray":
        return ray_runtime(settings, owner_uids)
    if settings.ray_address:
        raise MoorageError(
            f"MOORAGE_RAY_ADDRESS is set but MOORAGE_RUNTIME={settings.runtime} runs replicas "
            "elsewhere: set MOORAGE_RUNTIME=ray (or unset it) to run them on the Ray cluster, "
            "or unset MOORAGE_RAY_ADDRESS",
            code=ErrorCode.INVALID_FIELD,
        )
    if settings.runtime in ("auto", "docker"):
        try:
            client = docker_runtime.connect(settings.docker_host, timeout_s=60)
        except DockerException as exc:
            if settings.runtime == "docker":
                raise MoorageError(
                    f"no container engine answers at {settings.docker_host} ({exc}); start "
                    "Docker, or `podman system service --time=0 unix:///PATH` and set "
                    "MOORAGE_DOCKER_HOST=unix:///PATH, or set MOORAGE_RUNTIME=process",
                    code=ErrorCode.RUNTIME_UNAVAILABLE,
                ) from exc
        else:
            return docker_runtime.DockerRuntime(
                client,
                installation=docker_runtime.installation_id(settings.resolved_database_url),
                stop_grace_s=settings.stop_grace_s,
                log_max_bytes=settings.log_max_bytes,
                model_cache_root=settings.model_cache_dir,
                image_pulls=settings.home / "docker" / "image-pulls.json",
            )
    settings.replicas_dir.mkdir(parents=True, exist_ok=True)
    if settings.sandbox == "on" and os.geteuid() == 0:
        check_owner_uids(settings)
    sandbox = Sandbox.from_settings(settings)
    describe = log.warning if sandbox.refusal or not sandbox.enabled else log.info
    describe("%s", sandbox.describe())
    return ProcessRuntime(
        settings.replicas_dir,
        stop_grace_s=settings.stop_grace_s,
        file_max_bytes=settings.replica_file_max_bytes,
        log_read_max_bytes=settings.log_response_max_bytes,
        sandbox=sandbox,
        model_cache_root=settings.model_cache_dir,
        owner_uids=owner_uids,
        gpu_devices=discover(Nvml()).devices,
    )


def ray_runtime(settings: Settings, owner_uids: Callable[[str], int] | None) -> Runtime:
    """Replicas on the Ray cluster at ``MOORAGE_RAY_ADDRESS``, sandboxed on their nodes
    as the process runtime sandboxes them here (Ray is imported only when asked for)."""
    if not settings.ray_address:
        raise MoorageError(
            "MOORAGE_RUNTIME=ray needs MOORAGE_RAY_ADDRESS, the Ray head's HOST:PORT "
            "(docs/deploy.md)",
            code=ErrorCode.RUNTIME_UNAVAILABLE,
        )
    settings.replicas_dir.mkdir(parents=True, exist_ok=True)
    # Made here too, so the sandbox (set up on this host) can hide it on the nodes.
    settings.ray_replicas_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if settings.sandbox == "on" and os.geteuid() == 0:
        check_owner_uids(settings)
    sandbox = Sandbox.from_settings(settings)
    (log.warning if sandbox.refusal or not sandbox.enabled else log.info)(
        "%s", sandbox.describe("ray")
    )
    options = HostOptions(
        replicas_dir=str(settings.ray_replicas_root),
        sandbox=sandbox,
        stop_grace_s=settings.stop_grace_s,
        file_max_bytes=settings.replica_file_max_bytes,
        log_read_max_bytes=settings.log_response_max_bytes,
        model_cache_dir=str(settings.model_cache_dir.resolve()),
        log_max_bytes=settings.log_max_bytes,
        log_retention_s=settings.log_retention_s,
        log_check_interval_s=settings.log_check_interval_s,
    )
    namespace = settings.ray_namespace or (
        "moorage-" + docker_runtime.installation_id(settings.resolved_database_url)
    )
    try:
        return RayRuntime(
            settings.ray_address,
            namespace,
            options,
            owner_uids=owner_uids,
            node_ip=settings.ray_node_ip,
        )
    except RayUnavailable as exc:
        raise MoorageError(str(exc), code=ErrorCode.RUNTIME_UNAVAILABLE) from exc


def check_owner_uids(settings: Settings) -> None:
    """Refuses to start when the owners' uid range holds a host user or group: a replica
    running as one would share that account's files and processes. Warns when the
    setting the range replaced is still set."""
    uids = UidRange.from_settings(settings)
    clashes = host_ids.clashes(uids)
    if clashes:
        raise MoorageError(clash_message(uids, clashes), code=ErrorCode.INVALID_FIELD)
    if "MOORAGE_SANDBOX_UID" in os.environ:
        log.warning(
            "MOORAGE_SANDBOX_UID is no longer read: each owner's sandboxed replicas run as "
            "a uid of their own, from MOORAGE_SANDBOX_UID_BASE (%s uids from %s); unset it",
            uids.count,
            uids.base,
        )


def launch_guard(runtime: Runtime) -> Callable[[User, DeploySpec], None]:
    """Refuses, at the API, an endpoint this runtime cannot run: a normal user's that
    could only run unsandboxed (503), or a spec the process runtime cannot run, such as
    one without a command (400 naming the field)."""
    process = runtime if isinstance(runtime, ProcessRuntime | RayRuntime) else None
    refusal = process.sandbox.refusal if process is not None else None

    def guard(user: User, deploy: DeploySpec) -> None:
        if refusal is not None and not user.is_admin:
            raise Unavailable(refusal, code=ErrorCode.SANDBOX_UNAVAILABLE)
        problem = process.refusal(deploy, trusted=user.is_admin) if process else None
        if problem is not None:
            raise InvalidField(*problem)

    return guard


def gateway_demand(dispatcher: Dispatcher) -> Callable[[], Demand]:
    """What the autoscaler and the owners' traffic read of this process's gateway: in
    flight, waiting, admitted and answered requests per endpoint."""

    return lambda: dispatcher.snapshot().demand()


# ``serve`` runs API, controller and gateway; ``api`` the API alone, behind its own
# front door (the same limits on what a client sends), with no controller loop.
Role = Literal["serve", "api"]


def api_socket(settings: Settings, role: Role) -> Path:
    """The API's private socket; several ``moorage api`` may share one MOORAGE_HOME (the
    replicas' logs are read there), so each has its own."""
    if role == "serve":
        return settings.api_socket
    return settings.api_socket.with_name(f"api-{os.getpid()}.sock")


def load_secret_box(settings: Settings) -> secretbox.SecretBox:
    key = settings.secrets_key.get_secret_value() if settings.secrets_key else None
    try:
        return secretbox.load(key, settings.home)
    except secretbox.SecretKeyError as exc:
        raise MoorageError(str(exc), code=ErrorCode.INVALID_FIELD) from exc


def make_housekeeper(settings: Settings) -> logfiles.Housekeeper:
    """Rotates and removes the process runtime's replica logs: run by the process that
    runs the controller, once per host."""
    return logfiles.Housekeeper(
        settings.replicas_dir,
        max_bytes=settings.log_max_bytes,
        retention_s=settings.log_retention_s,
        interval_s=settings.log_check_interval_s,
        record=process_runtime.RECORD_FILE,
        output=process_runtime.OUTPUT_FILE,
    )


def private_home(settings: Settings) -> None:
    """MOORAGE_HOME holds the store, the admin token and every tenant's logs: 0700, and
    whatever moorage creates from now on is its own alone (umask 077, so files 0600).
    An existing home and its secrets are tightened too."""
    os.umask(0o077)
    home = settings.home
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    for secret in (home / "moorage.db", settings.admin_token_file, settings.replicas_dir):
        if secret.exists():
            secret.chmod(0o700 if secret.is_dir() else 0o600)


class MoorageServer:
    def __init__(
        self, settings: Settings, clock: Clock | None = None, *, role: Role = "serve"
    ) -> None:
        self.settings = settings
        self.role = role
        self._lost = False  # serve lost the controller lease (``_lost_lease``)
        self.clock = clock or SystemClock()
        private_home(settings)
        self.db = Database(settings.resolved_database_url)
        self.api_socket = api_socket(settings, role)
        self.gateway = build_gateway(
            RouteTableHolder(),
            wire_limits(settings),
            api_address=f"unix:{self.api_socket.resolve()}",
            serves_inference=role == "serve",
        )
        uids = UidRange.from_settings(settings)
        # Built by ``api`` too: it reads replicas' logs (files of this host, or the engine).
        self.runtime = make_runtime(
            settings, lambda user_id: owner_uid(self.db, user_id, uids, self.clock.now)
        )
        self.secret_box = load_secret_box(settings)
        # One set of defaults: what the API refuses past and what rollouts keep within.
        default_quotas = Quotas.defaults(settings)
        self.reconciler = Reconciler(
            self.db,
            self.runtime,
            self.clock,
            PlanPolicy(
                ready_timeout_s=settings.ready_timeout_s,
                crash_loop_threshold=settings.crash_loop_threshold,
            ),
            self.gateway.routes.swap,
            interval_s=settings.reconcile_interval_s,
            in_flight=self.gateway.dispatcher.in_flight,
            drain_timeout_s=settings.drain_timeout_s,
            secret_box=self.secret_box,
            quotas=default_quotas,
        )
        self.metering = Metering(self.db, self.clock, settings.metering_interval_s)
        self.autoscaler = Autoscaler(
            self.db,
            self.clock,
            gateway_demand(self.gateway.dispatcher),
            interval_s=settings.autoscale_interval_s,
            on_change=self.reconciler.wake,
        )
        self.gateway.router.on_cold_start = self.autoscaler.wake
        self.budgets = BudgetEnforcer(
            self.db, self.clock, settings.budget_interval_s, on_stop=self.reconciler.wake
        )
        status_policy = StatusPolicy(
            crash_loop_threshold=settings.crash_loop_threshold,
            ready_timeout_s=settings.ready_timeout_s,
        )
        self.accounts = AccountService(self.db, self.clock, on_change=self.reconciler.wake)
        self.flavors = FlavorService(self.db, self.clock)
        self.gpu_readings = GpuReadings(Nvml(), settings.gpu_metrics_interval_s)
        self.gateway.metrics.registry.register(
            GpuCollector(self.gpu_readings, GpuAllocationView(self.db).current)
        )
        self.gateway.metrics.registry.register(
            UsageCollector(UsageMetricsView(self.db, self.clock).current)
        )
        self.gateway.metrics.registry.register(
            BudgetCollector(BudgetMetricsView(self.db, self.clock).current)
        )
        self.quotas = QuotaService(self.db, self.clock, default_quotas)
        self.endpoints = EndpointService(
            self.db,
            self.clock,
            status_policy,
            max_instances=settings.max_instances,
            on_change=self.reconciler.wake,
            quotas=self.quotas,
            launch_guard=launch_guard(self.runtime),
        )
        self.logs = LogService(
            self.endpoints,
            self.runtime,
            follower_limit=lambda user_id: self.quotas.limits(user_id).log_followers,
            response_max_bytes=settings.log_response_max_bytes,
            housekeeper=make_housekeeper(settings) if role == "serve" else None,
        )
        self.api = create_api(
            Services(
                self.accounts,
                self.endpoints,
                self.flavors,
                self.logs,
                self.gateway.metrics.render,
                RouteFeed(
                    self.db,
                    max_age_s=settings.reconcile_interval_s,
                    # ``api``'s own table stays empty: the store's is the truth there.
                    local=self.gateway.routes if role == "serve" else None,
                    crash_loop_threshold=settings.crash_loop_threshold,
                ),
                settings.resolved_public_url,
                self.quotas,
                SecretService(self.db, self.clock, self.secret_box, self.quotas),
                RegistryCredentialService(self.db, self.clock, self.secret_box),
                EndpointBillingService(self.db, self.clock),
                BudgetService(self.db, self.clock),
                UsageService(self.db, self.clock),
                DemandService(self.db, self.clock, on_waiting=self.autoscaler.wake),
                TrafficService(self.db, self.clock, gateway_demand(self.gateway.dispatcher)),
            ),
            lifespan=self.lifespan,
        )

    def prepare(self) -> str | None:
        """Migrates the store, syncs flavors, ensures the admin token. Returns the admin
        token when it was generated just now."""
        with self.db.startup_lock():
            self.db.migrate()
            self.flavors.sync(configured_flavors(self.settings))
            return self.accounts.ensure_admin(self.settings)

    @contextlib.asynccontextmanager
    async def lifespan(self, _api: FastAPI) -> AsyncIterator[None]:
        """Starts usage checkpoints, the controller, the log housekeeper and the front
        door with the API, and stops them in reverse: the front door first, so no new
        request arrives while replicas stop. What started before a failure is stopped
        too."""
        if self.role == "api":
            async with self._api_only():
                yield
            log.info("moorage api stopped")
            return
        async with contextlib.AsyncExitStack() as started:
            started.callback(self.db.dispose)
            # No `moorage controller` leads this store while serve's controller runs.
            lease = ServeLease(
                self.db,
                f"serve:{socket.gethostname()}:{self.settings.home}"[:200],
                LeaseTerms(self.settings.leader_lease_s, self.settings.leader_renew_s),
                on_lost=self._lost_lease,
            )
            await lease.take()
            started.push_async_callback(lease.release)
            # Started before the controller so that it stops after it: the last
            # checkpoint bills the replicas up to the stops the controller records.
            self.metering.start()
            started.push_async_callback(self.metering.shutdown)
            await self.reconciler.start()
            started.push_async_callback(self._stop_controller)
            # Stops endpoints past a spending limit; stopped before the controller.
            self.budgets.start()
            started.push_async_callback(self.budgets.shutdown)
            # Sets automatic endpoints' counts; stopped before the controller.
            self.autoscaler.start()
            started.push_async_callback(self.autoscaler.shutdown)
            self.logs.start()
            started.push_async_callback(self.logs.close)
            self.gpu_readings.start()
            started.callback(self.gpu_readings.stop)
            await self.gateway.proxy.listen(self.settings.host, self.settings.port)
            started.push_async_callback(self.gateway.proxy.close)
            anyio.to_thread.current_default_thread_limiter().total_tokens = API_WORKER_THREADS
            freeze_startup_heap()
            yield
        if self._lost:
            log.info("moorage stopped; its replicas keep running for the controller that leads")
        else:
            log.info("moorage stopped; its replicas are stopped too")

    async def _stop_controller(self) -> None:
        """Stops every replica with serve, unless serve lost the lease: they are the
        leading controller's now."""
        if not self._lost:
            await self.reconciler.shutdown()

    async def _lost_lease(self, reason: str) -> None:
        """Another controller leads this store (serve was paused past its lease): serve
        stops acting as a controller at once, stopping no replica, and exits."""
        self._lost = True
        await self.reconciler.abandon()
        log.error(
            "moorage serve stops: %s; its replicas keep running for that controller. Run "
            "one controller per store: serve alone, or moorage api, controller and gateway",
            reason,
        )
        os.kill(os.getpid(), signal.SIGTERM)

    @contextlib.asynccontextmanager
    async def _api_only(self) -> AsyncIterator[None]:
        """``moorage api``: the front door and the API; the controller runs elsewhere
        and notices changes by its own polling."""
        async with contextlib.AsyncExitStack() as started:
            started.callback(self.db.dispose)
            started.push_async_callback(self.runtime.close)
            started.push_async_callback(self.logs.close)
            await self.gateway.proxy.listen(self.settings.host, self.settings.port)
            started.push_async_callback(self.gateway.proxy.close)
            anyio.to_thread.current_default_thread_limiter().total_tokens = API_WORKER_THREADS
            freeze_startup_heap()
            yield


def controller_name(settings: Settings) -> str:
    return settings.controller_id or f"{socket.gethostname()}-{os.getpid()}"


class ControllerTerm:
    """What a leading controller runs, on the store fenced at its epoch: the reconciler,
    usage checkpoints, spending limits and the autoscaler (whose demand is what the
    standalone gateways report to the store)."""

    def __init__(self, process: ControllerProcess, db: FencedDatabase) -> None:
        settings = process.settings
        clock = process.clock
        self.reconciler = Reconciler(
            db,
            process.runtime,
            clock,
            PlanPolicy(
                ready_timeout_s=settings.ready_timeout_s,
                crash_loop_threshold=settings.crash_loop_threshold,
            ),
            lambda _routes: None,  # gateways read the store's table through the API
            interval_s=settings.reconcile_interval_s,
            drain_timeout_s=settings.drain_timeout_s,
            secret_box=process.secret_box,
            quotas=Quotas.defaults(settings),
        )
        self.metering = Metering(db, clock, settings.metering_interval_s)
        self.autoscaler = Autoscaler(
            db,
            clock,
            Demand,  # nothing in this process: every gateway reports to the store
            interval_s=settings.autoscale_interval_s,
            on_change=self.reconciler.wake,
        )
        self.budgets = BudgetEnforcer(
            db, clock, settings.budget_interval_s, on_stop=self.reconciler.wake
        )

    async def start(self) -> None:
        self.metering.start()
        self.reconciler.lead()
        self.budgets.start()
        self.autoscaler.start()

    async def abandon(self) -> None:
        for ending in (self.autoscaler.shutdown(), self.budgets.shutdown()):
            with contextlib.suppress(Deposed):
                await ending
        await self.reconciler.abandon()
        task = self.metering._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Deposed):
                await task

    async def finish(self) -> None:
        """As abandon, and a last usage checkpoint while still the leader."""
        await self.abandon()
        with contextlib.suppress(Deposed):
            await self.metering.checkpoint()


class ControllerProcess:
    """``moorage controller``: stands by, or leads (``controller/leader.py``); no HTTP.
    Stopping it (SIGTERM, SIGINT) releases the lease and leaves every replica running."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.name = controller_name(settings)
        private_home(settings)
        self.db = Database(settings.resolved_database_url)
        # The leader's fenced store while it leads: owners' uids are given through it.
        self.store: Database = self.db
        uids = UidRange.from_settings(settings)
        self.runtime = make_runtime(
            settings, lambda user_id: owner_uid(self.store, user_id, uids, self.clock.now)
        )
        self.secret_box = load_secret_box(settings)
        self.flavors = FlavorService(self.db, self.clock)
        self.terms = LeaseTerms(settings.leader_lease_s, settings.leader_renew_s)
        self.election = Election(self.db, self.name, self.terms, self._term)
        self.gpu_readings = GpuReadings(Nvml(), settings.gpu_metrics_interval_s)
        self.housekeeper = make_housekeeper(settings)

    def prepare(self) -> None:
        """Migrates the store and syncs flavors, taking turns with other processes."""
        with self.db.startup_lock():
            self.db.migrate()
            self.flavors.sync(configured_flavors(self.settings))

    def _term(self, db: FencedDatabase) -> ControllerTerm:
        self.store = db
        return ControllerTerm(self, db)

    async def run(self) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        housekeeping = asyncio.create_task(self.housekeeper.run())
        self.gpu_readings.start()
        try:
            await self.election.run(stopping)
        finally:
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            self.gpu_readings.stop()
            await self.runtime.close()
            self.db.dispose()
        log.info("controller %s stopped", self.name)
