"""The reconciler in process: a SQLite store in tmp_path, the fake runtime, a fake clock.

What each test checks is what a user would see from outside: which replicas the
gateway's table routes (every table the controller publishes is kept), what the
runtime was told to start and stop, and the replicas' recorded states. Each pass
is driven by hand (``reconcile_once`` after moving the clock); readiness probes
are real HTTP requests to the fake replicas on 127.0.0.1, so a pass is repeated
until a condition holds, with a deadline, rather than timed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from moorage.clock import FakeClock
from moorage.controller.plan import PlanPolicy
from moorage.controller.reconciler import Reconciler
from moorage.models.endpoints import DeploySpec, Endpoint, EndpointStatus, ReadinessProbe
from moorage.models.events import EndpointChange, RecordedEvent
from moorage.models.replicas import Replica, ReplicaEventKind, ReplicaState
from moorage.models.states import EndpointEventKind
from moorage.models.status import DerivedStatus, StatusPolicy, derive_status
from moorage.routing.table import RouteTable
from moorage.runtimes.base import Launch, Observed, StartError, StartPending
from moorage.runtimes.fake import Behavior, FakeHost, FakeRuntime
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.events import EventRepository
from moorage.store.replicas import ReplicaRepository
from moorage.tokens import hash_token
from tests.unit.builders import T0, make_endpoint

pytestmark = pytest.mark.anyio

WAIT_S = 10.0
GOOD = "serve the model"
BROKEN = "python3 -m no_such_module"
SILENT = "sleep 300"


@dataclass
class Published:
    """One route table the controller published, and what the runtime had stopped by then."""

    routed: frozenset[str]
    stopped_before: frozenset[str]
    tokens: frozenset[str] = frozenset()


@dataclass
class Control:
    """A store, a fake runtime on a fake host, and a reconciler publishing into a list."""

    db: Database
    clock: FakeClock
    host: FakeHost
    script: Callable[[Launch], Behavior]
    policy: PlanPolicy
    in_flight: dict[str, int] = field(default_factory=dict)
    tables: list[Published] = field(default_factory=list)
    user_id: str = ""
    runtime: FakeRuntime = field(init=False)
    reconciler: Reconciler = field(init=False)

    def __post_init__(self) -> None:
        self._make()

    async def restart(self) -> None:
        """moorage killed and started again: nothing in memory survives (the
        probes in flight are cancelled); the replicas run on, and the new runtime
        and reconciler share the host and the store."""
        await self.reconciler.probes.close()
        self._make()

    def _make(self) -> None:
        self.runtime = FakeRuntime(script=self.script, clock=self.clock, host=self.host)
        self.reconciler = Reconciler(
            self.db,
            self.runtime,
            self.clock,
            self.policy,
            self._publish,
            in_flight=lambda replica_id: self.in_flight.get(replica_id, 0),
            drain_timeout_s=5.0,
        )

    def _publish(self, table: RouteTable) -> None:
        routed = frozenset(
            r.replica_id for route in table.endpoints.values() for r in route.replicas
        )
        self.tables.append(
            Published(routed, frozenset(self.runtime.stops), table.known_token_hashes)
        )

    # -- the store, as the services write it --------------------------------------

    def create(
        self, target: int = 1, command: str = GOOD, probe: ReadinessProbe | None = None
    ) -> Endpoint:
        endpoint = dataclasses.replace(
            make_endpoint(f"ep-{time.monotonic_ns()}"),
            user_id=self.user_id,
            target_instance_number=target,
            deploy=DeploySpec(
                image_url="local",
                command=command,
                port=8000,
                readiness_probe=probe or ReadinessProbe(),
            ),
        )
        with self.db.session() as session:
            EndpointRepository(session).add(endpoint)
            EndpointRepository(session).add_revision(endpoint)
        return endpoint

    def change_command(self, endpoint: Endpoint, command: str) -> Endpoint:
        """A PUT of new deploy_metadata: a new revision."""
        with self.db.session() as session:
            repository = EndpointRepository(session)
            current = repository.get_live(endpoint.service_id)
            assert current is not None
            updated = dataclasses.replace(
                current,
                deploy=dataclasses.replace(current.deploy, command=command),
                revision=repository.latest_revision(endpoint.service_id) + 1,
                rollout_note=None,
            )
            repository.save(updated)
            repository.add_revision(updated)
        return updated

    def delete(self, endpoint: Endpoint) -> None:
        """A DELETE of the endpoint: its replicas stop."""
        with self.db.session() as session:
            repository = EndpointRepository(session)
            current = repository.get_live(endpoint.service_id)
            assert current is not None
            repository.save(dataclasses.replace(current, deleted_at=self.clock.now()))

    def endpoint(self, service_id: str) -> Endpoint:
        with self.db.session() as session:
            found = EndpointRepository(session).get_live(service_id)
        assert found is not None
        return found

    def replicas(self, service_id: str | None = None) -> Sequence[Replica]:
        with self.db.session() as session:
            return ReplicaRepository(session).live([service_id] if service_id else None)

    def status(self, service_id: str) -> DerivedStatus:
        """What ``GET /v1/inference-service/{id}`` would say."""
        policy = StatusPolicy(crash_loop_threshold=self.policy.crash_loop_threshold)
        return derive_status(self.endpoint(service_id), self.replicas(service_id), policy)

    def history(self, service_id: str) -> Sequence[RecordedEvent | EndpointChange]:
        """What ``GET /v1/inference-service/{id}/events`` lists, newest first."""
        with self.db.session() as session:
            events, _total = EventRepository(session).page(service_id, offset=0, limit=1000)
        return events

    def ready(self, service_id: str, revision: int | None = None) -> list[Replica]:
        return [
            r
            for r in self.replicas(service_id)
            if r.state is ReplicaState.READY and revision in (None, r.revision)
        ]

    # -- passes ----------------------------------------------------------------

    async def step(self, advance_s: float = 1.0) -> None:
        """One pass, ``advance_s`` later than the last, then a moment for its probes and
        background stops to finish."""
        self.clock.advance(advance_s)
        await self.reconciler.reconcile_once()
        await asyncio.sleep(0.02)

    async def until(
        self, condition: Callable[[], object], what: str, *, advance_s: float = 1.0
    ) -> None:
        """Passes until ``condition`` holds; fails after WAIT_S of real time."""
        deadline = time.monotonic() + WAIT_S
        while not condition():
            assert time.monotonic() < deadline, f"never: {what}"
            await self.step(advance_s)


class MakeControl(Protocol):
    def __call__(
        self, script: Callable[[Launch], Behavior] | None = None, **policy: float
    ) -> Control:
        """A Control whose runtime runs ``script`` (every replica serves by default),
        under a plan policy with the given fields changed."""
        ...


@pytest.fixture
async def make_control(tmp_path: Path) -> AsyncIterator[MakeControl]:
    """Controls for tests that script the runtime or change the policy; each is shut
    down and its store closed after the test."""
    made: list[Control] = []

    def make(script: Callable[[Launch], Behavior] | None = None, **policy: float) -> Control:
        db = Database(f"sqlite:///{tmp_path / f'moorage-{len(made)}.db'}")
        db.migrate()
        with db.session() as session:
            user = AccountRepository(session).create_user("tenant", is_admin=False, now=T0)
        control = Control(
            db,
            FakeClock(),
            FakeHost(),
            script or (lambda _launch: Behavior()),
            PlanPolicy(**policy),  # type: ignore[arg-type]
            user_id=user.user_id,
        )
        made.append(control)
        return control

    try:
        yield make
    finally:
        for control in made:
            await control.reconciler.shutdown()
            control.db.dispose()


@pytest.fixture
def control(make_control: MakeControl) -> Control:
    """GOOD, BROKEN and SILENT commands, the default policy."""
    return make_control(_by_command)


def _by_command(launch: Launch) -> Behavior:
    """GOOD serves; BROKEN exits at once with an import error, as a typo would; SILENT
    runs but never listens."""
    if launch.deploy.command == BROKEN:
        return Behavior(exit_code=1, output="ModuleNotFoundError: No module named 'no_such'")
    if launch.deploy.command == SILENT:
        return Behavior(answers=False)
    return Behavior()


# -- a pass ----------------------------------------------------------------------------------


async def test_a_new_endpoint_gets_its_replicas_started_and_routed_once_ready(
    control: Control,
) -> None:
    endpoint = control.create(target=2)

    await control.until(lambda: len(control.ready(endpoint.service_id)) == 2, "two ready")

    ready = {r.replica_id for r in control.ready(endpoint.service_id)}
    assert control.tables[-1].routed == ready
    assert [launch.endpoint_id for launch in control.runtime.starts] == [endpoint.service_id] * 2
    assert all(launch.sandboxed for launch in control.runtime.starts), "a tenant's runs sandboxed"
    # Routed only once its probe passed: no table routed a replica before it was ready.
    first_routed = next(i for i, t in enumerate(control.tables) if t.routed)
    assert control.tables[first_routed].routed <= ready


async def test_a_rollout_routes_the_new_replica_before_the_old_one_is_stopped(
    control: Control,
) -> None:
    endpoint = control.create()
    await control.until(lambda: control.ready(endpoint.service_id), "revision 1 ready")
    [old] = control.ready(endpoint.service_id)
    published_before = len(control.tables)

    control.change_command(endpoint, "serve the model, better")
    await control.until(
        lambda: (
            control.ready(endpoint.service_id, revision=2)
            and len(control.replicas(endpoint.service_id)) == 1
        ),
        "revision 2 ready and revision 1 stopped",
    )

    [new] = control.ready(endpoint.service_id, revision=2)
    during = control.tables[published_before:]
    assert all(t.routed for t in during), "a table of the rollout routed no replica"
    joined = next(t for t in during if new.replica_id in t.routed)
    assert old.replica_id not in joined.stopped_before, "the old replica stopped first"
    for table in during:
        if old.replica_id in table.stopped_before:
            assert old.replica_id not in table.routed, "a stopped replica was still routed"
    assert old.replica_id in control.runtime.stops
    assert control.tables[-1].routed == {new.replica_id}
    assert [r.replica_id for r in control.replicas(endpoint.service_id)] == [new.replica_id]


async def test_a_replica_being_replaced_finishes_its_requests_before_it_stops(
    control: Control,
) -> None:
    endpoint = control.create()
    await control.until(lambda: control.ready(endpoint.service_id), "revision 1 ready")
    [old] = control.ready(endpoint.service_id)
    control.in_flight[old.replica_id] = 1  # a long answer is still streaming

    control.change_command(endpoint, "serve the model, better")
    await control.until(lambda: control.ready(endpoint.service_id, revision=2), "revision 2 ready")
    for _ in range(3):
        await control.step()

    assert old.replica_id not in control.tables[-1].routed, "it still gets new requests"
    assert old.replica_id not in control.runtime.stops, "stopped while a request ran"
    control.in_flight[old.replica_id] = 0
    await control.until(lambda: old.replica_id in control.runtime.stops, "stopped once done")
    assert [r.replica_id for r in control.replicas(endpoint.service_id)] != [old.replica_id]


async def test_a_revision_that_cannot_run_is_rolled_back_while_the_old_one_serves(
    control: Control,
) -> None:
    endpoint = control.create()
    await control.until(lambda: control.ready(endpoint.service_id), "revision 1 ready")
    [old] = control.ready(endpoint.service_id)
    published_before = len(control.tables)

    control.change_command(endpoint, BROKEN)
    await control.until(
        lambda: control.endpoint(endpoint.service_id).deploy.command == GOOD, "rolled back"
    )

    rolled_back = control.endpoint(endpoint.service_id)
    assert rolled_back.revision == 1
    assert rolled_back.rollout_note is not None
    assert "revision 2 could not run" in rolled_back.rollout_note
    assert "No module named" in rolled_back.rollout_note, "the reason is the app's own words"
    broken_starts = [s for s in control.runtime.starts if s.deploy.command == BROKEN]
    assert len(broken_starts) >= control.policy.crash_loop_threshold
    assert all(old.replica_id in t.routed for t in control.tables[published_before:]), (
        "the earlier revision stopped serving during the rollback"
    )
    await control.until(
        lambda: [r.revision for r in control.replicas(endpoint.service_id)] == [1],
        "no replica of revision 2 left",
    )
    assert [r.replica_id for r in control.ready(endpoint.service_id)] == [old.replica_id]


# -- failures and retries --------------------------------------------------------------------


async def test_a_failing_start_is_retried_with_growing_backoff_until_it_starts(
    make_control: MakeControl,
) -> None:
    failures = 3

    def script(launch: Launch) -> Behavior:
        if len(attempts) < failures:
            attempts.append(launch)
            return Behavior(error=StartError("deploy_metadata.image_url: no such image"))
        return Behavior()

    attempts: list[Launch] = []
    control = make_control(script, backoff_base_s=4.0)
    endpoint = control.create()
    await control.step(0)
    assert len(attempts) == 1
    [failed] = control.replicas(endpoint.service_id)
    assert failed.state is ReplicaState.FAILED
    assert failed.last_failure is not None
    assert "no such image" in failed.last_failure

    # Backoff 4 s after the first failure, 8 s after the second.
    for waited in (3, 1, 7, 1):
        before = len(attempts)
        await control.step(waited)
        retried = len(attempts) > before
        assert retried == (waited == 1), f"{waited} s later, retried: {retried}"
    await control.until(lambda: control.ready(endpoint.service_id), "ready", advance_s=16)
    assert control.replicas(endpoint.service_id)[0].replica_id == failed.replica_id


async def test_a_start_pending_an_image_pull_shows_its_progress_then_starts(
    make_control: MakeControl,
) -> None:
    pulls: list[str] = []

    def script(_launch: Launch) -> Behavior:
        pulls.append("again")
        if len(pulls) < 3:
            return Behavior(error=StartPending(f"pulling the image: {len(pulls) * 30}%"))
        return Behavior()

    control = make_control(script)
    endpoint = control.create()
    await control.step()
    [pending] = control.replicas(endpoint.service_id)
    assert pending.progress == "pulling the image: 30%"
    assert pending.state is not ReplicaState.FAILED, "a pull in progress is no failure"
    await control.until(lambda: control.ready(endpoint.service_id), "ready")
    assert len(pulls) == 3


async def test_a_replica_that_keeps_crashing_is_restarted_with_backoff_and_says_why(
    control: Control,
) -> None:
    endpoint = control.create(command=BROKEN)

    await control.until(
        lambda: any(
            r.consecutive_failures >= control.policy.crash_loop_threshold
            for r in control.replicas(endpoint.service_id)
        ),
        "a crash loop",
    )

    [replica] = control.replicas(endpoint.service_id)
    assert replica.last_failure is not None
    assert "code 1" in replica.last_failure
    assert "No module named 'no_such'" in replica.last_failure
    assert all(not t.routed for t in control.tables), "a crashing replica was routed"
    starts = len(control.runtime.starts)
    await control.step(0.5)
    assert len(control.runtime.starts) == starts, "restarted without waiting"


async def test_a_crashed_ready_replica_leaves_rotation_and_is_started_again(
    control: Control,
) -> None:
    endpoint = control.create()
    await control.until(lambda: control.ready(endpoint.service_id), "ready")
    [replica] = control.ready(endpoint.service_id)

    control.runtime.crash(replica.replica_id, 137, "Killed")
    await control.step()

    assert replica.replica_id not in control.tables[-1].routed
    [failed] = control.replicas(endpoint.service_id)
    assert failed.last_failure is not None
    assert "137" in failed.last_failure
    await control.until(lambda: control.ready(endpoint.service_id), "ready again")
    assert control.ready(endpoint.service_id)[0].replica_id == replica.replica_id


async def test_a_crashing_command_makes_the_endpoint_unavailable_saying_what_to_fix(
    control: Control,
) -> None:
    endpoint = control.create(command=BROKEN)

    await control.until(
        lambda: control.status(endpoint.service_id).status is EndpointStatus.UNAVAILABLE,
        "unavailable",
    )

    info = control.status(endpoint.service_id).status_info
    assert info is not None
    assert "exited with code 1" in info
    assert "No module named 'no_such'" in info
    assert "deploy_metadata" in info


async def test_an_app_that_never_listens_is_unavailable_after_the_ready_timeout(
    make_control: MakeControl,
) -> None:
    control = make_control(_by_command, ready_timeout_s=30.0)
    endpoint = control.create(command=SILENT)
    await control.step()
    await control.step(20)
    assert control.status(endpoint.service_id).status is EndpointStatus.INITIALIZING

    await control.until(
        lambda: control.status(endpoint.service_id).status is EndpointStatus.UNAVAILABLE,
        "unavailable",
        advance_s=5,
    )

    info = control.status(endpoint.service_id).status_info
    assert info is not None
    assert "$PORT" in info, "the words do not point at the usual mistake"


async def test_an_endpoints_startup_timeout_replaces_the_servers_ready_timeout(
    make_control: MakeControl,
) -> None:
    """A model server given 2 hours is still waited for after the server's 30 s; one
    given 10 s fails after 10 s, not 30."""
    control = make_control(_by_command, ready_timeout_s=30.0)
    patient = control.create(command=SILENT, probe=ReadinessProbe(startup_timeout_s=7200.0))
    hasty = control.create(command=SILENT, probe=ReadinessProbe(startup_timeout_s=10.0))
    await control.step()
    await control.step(12)
    await control.step()

    assert control.status(hasty.service_id).status is EndpointStatus.UNAVAILABLE
    info = control.status(hasty.service_id).status_info
    assert info is not None
    assert "within 10 s" in info, info
    assert "startup_timeout_s" in info
    await control.step(60)
    await control.step()
    assert control.status(patient.service_id).status is EndpointStatus.INITIALIZING
    assert not control.replicas(patient.service_id)[0].consecutive_failures


async def test_an_app_on_another_port_is_named_and_an_app_on_its_port_is_probed(
    make_control: MakeControl,
) -> None:
    control = make_control(lambda _launch: Behavior(answers=False, listens_on=(8080,)))
    endpoint = control.create()

    def info() -> str:
        return control.status(endpoint.service_id).status_info or ""

    await control.until(lambda: "the app listens on 8080, not on $PORT" in info(), "named")
    [replica] = control.replicas(endpoint.service_id)
    given = replica.startup.given_port
    assert f"not on $PORT {given}" in info()

    control.runtime.listen_on(replica.replica_id, given or 0)
    await control.until(lambda: "listens on 8080" not in info(), "the hint to go")
    assert f"port {given} ($PORT)" in info()


async def test_fixing_the_command_recovers_the_endpoint(control: Control) -> None:
    endpoint = control.create(command=BROKEN)
    await control.until(
        lambda: control.status(endpoint.service_id).status is EndpointStatus.UNAVAILABLE,
        "unavailable",
    )

    control.change_command(endpoint, GOOD)
    await control.until(
        lambda: control.status(endpoint.service_id).status is EndpointStatus.AVAILABLE,
        "available again",
    )

    assert control.status(endpoint.service_id).status_info is None
    [ready] = control.ready(endpoint.service_id)
    assert control.tables[-1].routed == {ready.replica_id}


async def test_a_replica_failing_its_probe_leaves_rotation_and_is_replaced(
    control: Control,
) -> None:
    endpoint = control.create(target=2)
    await control.until(lambda: len(control.ready(endpoint.service_id)) == 2, "two ready")
    sick, healthy = control.ready(endpoint.service_id)

    control.runtime.answer_with(sick.replica_id, 500)
    await control.until(
        lambda: sick.replica_id not in control.tables[-1].routed, "the sick replica out"
    )

    assert healthy.replica_id in control.tables[-1].routed, "the healthy one left too"
    await control.until(
        lambda: control.tables[-1].routed == {sick.replica_id, healthy.replica_id},
        "the sick replica replaced and back in rotation",
    )
    restarts = [s for s in control.runtime.starts if s.replica_id == sick.replica_id]
    assert len(restarts) == 2, "it rejoined without being started afresh"


async def test_a_replica_the_runtime_cannot_launch_fails_once_in_the_log_and_others_serve(
    make_control: MakeControl, caplog: pytest.LogCaptureFixture
) -> None:
    """A runtime raising what it should not (the process runtime raised ``ValueError:
    embedded null byte`` for an old store's env) fails that replica, with the words,
    one log line in all while retried, and every other endpoint is served."""

    def script(launch: Launch) -> Behavior:
        if launch.deploy.command == BROKEN:
            return Behavior(error=ValueError("embedded null byte"))
        return Behavior()

    control = make_control(script)
    broken = control.create(command=BROKEN)
    fine = control.create()
    await control.until(
        lambda: any(r.consecutive_failures >= 3 for r in control.replicas(broken.service_id)),
        "the broken replica retried three times",
        advance_s=5,
    )
    await control.until(lambda: control.ready(fine.service_id), "the other one ready")

    info = control.status(broken.service_id).status_info
    assert control.status(broken.service_id).status is EndpointStatus.UNAVAILABLE
    assert info is not None
    assert "embedded null byte" in info
    about_it = [r for r in caplog.records if "embedded null byte" in r.getMessage()]
    assert len(about_it) == 1, [r.getMessage() for r in about_it]
    assert about_it[0].exc_info is None, "a traceback for a replica's failure"
    assert broken.service_id in about_it[0].getMessage()


# -- one tenant's probes ----------------------------------------------------------------------


@dataclass
class Hostile:
    """Apps whose probe never completes: one answers a byte a second, one never answers."""

    drip: str
    silent: str
    probed: list[str] = field(default_factory=list)


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    connections: list[asyncio.StreamWriter] = []

    async def drip(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        found.probed.append("drip")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        while not writer.is_closing():  # a header that never ends
            await asyncio.sleep(1)
            writer.write(b"a")

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        found.probed.append("silent")
        while await reader.read(4096):  # reads what comes, answers nothing
            pass

    servers = [
        await asyncio.start_server(drip, "127.0.0.1", 0),
        await asyncio.start_server(silent, "127.0.0.1", 0),
    ]
    drip_address, silent_address = (f"127.0.0.1:{s.sockets[0].getsockname()[1]}" for s in servers)
    found = Hostile(drip_address, silent_address)
    try:
        yield found
    finally:
        for server in servers:
            server.close()
        for writer in connections:
            writer.close()


async def test_probes_that_never_complete_hold_up_no_other_tenant_nor_a_revocation(
    make_control: MakeControl, hostile: Hostile
) -> None:
    def script(launch: Launch) -> Behavior:
        return Behavior(address=getattr(hostile, launch.deploy.command or "", None))

    control = make_control(script)
    attacks = [
        control.create(command=mode, probe=ReadinessProbe(path="/ready", timeout_s=timeout))
        for mode, timeout in (("drip", 60.0), ("silent", 600.0))
    ]
    await control.until(lambda: {"drip", "silent"} <= set(hostile.probed), "both probed")
    with control.db.session() as session:
        accounts = AccountRepository(session)
        token = accounts.add_token(control.user_id, "mrg_second", name="second", now=T0)
    passes: list[float] = []

    async def timed_step() -> None:
        started = time.monotonic()
        await control.step()
        passes.append(time.monotonic() - started)

    other = control.create()
    while not control.ready(other.service_id):
        assert len(passes) < 10, "another tenant's endpoint never became ready"
        await timed_step()
    assert hash_token("mrg_second") in control.tables[-1].tokens
    with control.db.session() as session:
        AccountRepository(session).revoke_token(token.token_id, control.clock.now())
    await timed_step()

    assert hash_token("mrg_second") not in control.tables[-1].tokens, "revoked, yet routed"
    assert max(passes) < 1.0, f"a pass waited for a probe: {max(passes):.2f} s"
    for attack in attacks:
        assert control.status(attack.service_id).status is EndpointStatus.INITIALIZING


# -- restarts of moorage ---------------------------------------------------------------------


async def test_a_restarted_controller_adopts_running_replicas_and_starts_none(
    control: Control, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="moorage.lifecycle")
    endpoint = control.create(target=2)
    await control.until(lambda: len(control.ready(endpoint.service_id)) == 2, "two ready")
    serving = {r.replica_id for r in control.ready(endpoint.service_id)}
    history = control.history(endpoint.service_id)
    assert not [r for r in caplog.records if "adopted" in r.getMessage()]

    await control.restart()  # moorage killed: nothing in memory survives, the replicas run on
    await control.until(lambda: control.tables[-1].routed == serving, "serving again")
    for _ in range(3):
        await control.step()

    assert control.runtime.starts == [], "a running replica was started again"
    assert control.runtime.stops == []
    assert {r.replica_id for r in control.ready(endpoint.service_id)} == serving
    # The log says once per replica that it was adopted; its recorded state is unchanged.
    adopted = [r for r in caplog.records if "adopted after a restart" in r.getMessage()]
    assert sorted(str(getattr(r, "replica_id", "")) for r in adopted) == sorted(serving)
    assert all(r.levelname == "INFO" and r.name == "moorage.lifecycle" for r in adopted)
    assert all(
        f"endpoint {endpoint.service_id}: replica " in r.getMessage()
        and "still running at " in r.getMessage()
        and r.getMessage().endswith("kept ready")
        for r in adopted
    )
    assert control.history(endpoint.service_id) == history


async def test_a_restarted_controller_stops_replicas_no_endpoint_owns_and_replaces_gone_ones(
    control: Control,
) -> None:
    endpoint = control.create()
    await control.until(lambda: control.ready(endpoint.service_id), "ready")
    [replica] = control.ready(endpoint.service_id)
    stray = make_endpoint("deleted-meanwhile")
    orphan = Launch("orphan-replica", stray.service_id, 1, stray.deploy)
    await control.runtime.start(orphan)  # its endpoint's row is gone
    await FakeRuntime(host=control.host).stop(replica.replica_id)  # gone while moorage was

    await control.restart()
    await control.until(
        lambda: "orphan-replica" in control.runtime.stops and control.ready(endpoint.service_id),
        "the orphan stopped and the endpoint served again",
    )

    assert "orphan-replica" not in await control.runtime.observe()
    assert [launch.replica_id for launch in control.runtime.starts] == [replica.replica_id]


async def test_a_rollout_interrupted_by_a_restart_is_recorded_finished_once(
    control: Control,
) -> None:
    """The restarted controller remembers nothing of the rollout; the stops its earlier
    self began still finish (as a second controller's would), and each finished stop
    asks whether the rollout is over: the events list it finished once."""
    endpoint = control.create(target=2)
    await control.until(lambda: len(control.ready(endpoint.service_id)) == 2, "two ready")
    old = control.ready(endpoint.service_id)
    for replica in old:  # long answers hold the old replicas in their drain
        control.in_flight[replica.replica_id] = 1
    control.change_command(endpoint, "serve the model, better")
    await control.until(
        lambda: len(control.ready(endpoint.service_id, revision=2)) == 2, "revision 2 ready"
    )

    await control.restart()  # mid-rollout: the old replicas are draining
    control.in_flight.clear()
    await control.until(
        lambda: [r.revision for r in control.replicas(endpoint.service_id)] == [2, 2],
        "revision 1 stopped",
    )
    for _ in range(3):
        await control.step()

    finished = [
        event
        for event in control.history(endpoint.service_id)
        if isinstance(event, EndpointChange) and event.kind is EndpointEventKind.ROLLOUT_FINISHED
    ]
    assert [event.revision for event in finished] == [2]


async def test_a_replica_stopped_while_a_pass_was_under_way_is_stopped_and_logged_once(
    control: Control, caplog: pytest.LogCaptureFixture
) -> None:
    """The pass after a delete read the replica before its stop was recorded, and the
    stop finished while the pass waited for the runtime: it plans the same stop again
    (or reads the stopped process as gone), which must not become a second ``stopped``
    event, a ``failed`` one, nor a second log line."""
    endpoint = control.create()
    await control.until(lambda: control.ready(endpoint.service_id), "ready")
    [replica] = control.ready(endpoint.service_id)
    observe, stop = control.runtime.observe, control.runtime.stop

    async def slow_observe() -> Mapping[str, Observed]:
        await asyncio.sleep(0.3)  # an engine that takes its time to list containers
        return await observe()

    async def slow_stop(replica_id: str) -> None:
        await asyncio.sleep(0.1)
        await stop(replica_id)

    control.runtime.observe = slow_observe  # type: ignore[method-assign]
    control.runtime.stop = slow_stop  # type: ignore[method-assign]
    control.delete(endpoint)
    caplog.set_level(logging.INFO, logger="moorage.lifecycle")
    for _ in range(4):
        await control.step()
    await asyncio.sleep(0.5)  # every stop begun has finished

    stops = [
        e
        for e in control.history(endpoint.service_id)
        if isinstance(e, RecordedEvent)
        and e.event.replica_id == replica.replica_id
        and e.event.kind is ReplicaEventKind.STOPPED
    ]
    assert len(stops) == 1, stops
    lines = [r.getMessage() for r in caplog.records if replica.replica_id in r.getMessage()]
    assert len([line for line in lines if ") stopped:" in line]) == 1, lines
    assert not [line for line in lines if ") failed" in line], lines  # it was stopped
