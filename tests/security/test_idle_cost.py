"""Stopped endpoints cost the reconcile pass nothing.

A user with many stopped endpoints once raised moorage's idle CPU from 3% to 34%:
every 1 s pass loaded every endpoint. The pass now loads the endpoints that want
replicas (or still have some); stopped ones only give route entries, reloaded
after a store change. Counted, not timed: the same passes run over 10 and over
1,000 stopped endpoints (written straight into the store), on both stores, and
load the same rows with the same statements. Their route entries still say
"stopped" to their owner, and stopping or starting one is still seen at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from moorage.clock import FakeClock
from moorage.controller.plan import PlanPolicy
from moorage.controller.reconciler import Reconciler
from moorage.models.endpoints import DesiredState
from moorage.routing.table import RouteTable
from moorage.runtimes.base import Launch, Observed
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository, IdleEndpoint
from moorage.store.tables import EndpointRow
from moorage.tokens import hash_token
from tests.conftest import database
from tests.unit.builders import T0, make_endpoint

TOKEN = "mrg_idle_cost_tenant"
PASSES = 5


class StillRuntime:
    """Replicas that start and keep running (nothing listens: their probes fail)."""

    name = "still"

    def __init__(self) -> None:
        self.running: dict[str, Observed] = {}

    async def start(self, launch: Launch) -> str:
        address = "127.0.0.1:9"
        self.running[launch.replica_id] = Observed(
            launch.replica_id, launch.endpoint_id, launch.revision, address, running=True
        )
        return address

    async def stop(self, replica_id: str) -> None:
        self.running.pop(replica_id, None)

    async def observe(self) -> Mapping[str, Observed]:
        return dict(self.running)

    def logs(self, replica_id: str, *, tail: int | None, follow: bool) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


@dataclass
class Loads:
    """What the passes read: SQL statements, endpoint rows and idle-route rows."""

    statements: int = 0
    endpoint_rows: int = 0
    idle_rows: int = 0


@contextmanager
def counting(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loads]:
    loads = Loads()

    def statement(*_args: Any) -> None:
        loads.statements += 1

    def endpoint_row(*_args: Any) -> None:
        loads.endpoint_rows += 1

    original = EndpointRepository.list_idle

    def list_idle(self: EndpointRepository) -> Sequence[IdleEndpoint]:
        rows = original(self)
        loads.idle_rows += len(rows)
        return rows

    monkeypatch.setattr(EndpointRepository, "list_idle", list_idle)
    event.listen(db.engine, "before_cursor_execute", statement)
    event.listen(EndpointRow, "load", endpoint_row)
    try:
        yield loads
    finally:
        event.remove(EndpointRow, "load", endpoint_row)
        event.remove(db.engine, "before_cursor_execute", statement)
        monkeypatch.setattr(EndpointRepository, "list_idle", original)


@asynccontextmanager
async def installation(database_url: str, stopped: int) -> AsyncIterator[Reconciler]:
    """A store with one running endpoint and ``stopped`` stopped ones, and a controller
    that has made its first pass over it."""
    db = Database(database_url)
    db.migrate()
    with db.session() as session:
        accounts = AccountRepository(session)
        user = accounts.create_user("tenant", is_admin=False, now=T0)
        accounts.add_token(user.user_id, TOKEN, name="t", now=T0)
        repository = EndpointRepository(session)
        repository.add(make_endpoint("running", user_id=user.user_id))
        for index in range(stopped):
            repository.add(
                dataclasses.replace(
                    make_endpoint(f"stopped-{index:04d}", user_id=user.user_id),
                    desired_state=DesiredState.STOPPED,
                )
            )
    tables: list[RouteTable] = []
    reconciler = Reconciler(db, StillRuntime(), FakeClock(), PlanPolicy(), tables.append)
    try:
        await reconciler.reconcile_once()
        yield reconciler
    finally:
        await reconciler.shutdown()
        db.dispose()


async def steady_passes(
    database_url: str, stopped: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[Loads, RouteTable]:
    tables: list[RouteTable] = []
    async with installation(database_url, stopped) as reconciler:
        reconciler.publish_routes = tables.append
        with counting(reconciler.db, monkeypatch) as loads:
            for _ in range(PASSES):
                await reconciler.reconcile_once()
    return loads, tables[-1]


STORES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("store", STORES)
def test_a_pass_loads_nothing_per_stopped_endpoint(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "few").mkdir()
    (tmp_path / "many").mkdir()
    with database(store, tmp_path / "few") as url:
        few, few_table = asyncio.run(steady_passes(url, 10, monkeypatch))
    with database(store, tmp_path / "many") as url:
        many, many_table = asyncio.run(steady_passes(url, 1000, monkeypatch))

    assert many == few, f"10 stopped: {few}; 1,000 stopped: {many}"
    assert many.idle_rows == 0  # loaded once, before these passes
    assert many.endpoint_rows <= 2 * PASSES  # the running endpoint, once or twice a pass
    # Every stopped endpoint still has its entry: its owner hears "stopped", not 404.
    assert len(many_table.endpoints) == 1001
    entry = many_table.endpoints["stopped-0999"]
    assert entry.status_hint == "stopped"
    assert hash_token(TOKEN) in entry.owner_token_hashes
    assert len(few_table.endpoints) == 11


def test_stopping_and_starting_is_seen_at_the_next_pass(database_url: str) -> None:
    async def scenario() -> tuple[str, str, str]:
        tables: list[RouteTable] = []
        async with installation(database_url, 3) as reconciler:
            reconciler.publish_routes = tables.append
            for service_id, state in (
                ("running", DesiredState.STOPPED),
                ("stopped-0001", DesiredState.RUNNING),
            ):
                with reconciler.db.session() as session:
                    repository = EndpointRepository(session)
                    endpoint = repository.get_live(service_id)
                    assert endpoint is not None
                    repository.save(dataclasses.replace(endpoint, desired_state=state))
            reconciler.wake()  # what every API write does after its commit
            runtime = reconciler.runtime
            assert isinstance(runtime, StillRuntime)
            for _ in range(20):  # the stop drains in the background
                await reconciler.reconcile_once()
                started = {o.endpoint_id for o in runtime.running.values()}
                if started == {"stopped-0001"}:
                    break
                await asyncio.sleep(0.05)
            table = tables[-1]
            return (
                table.endpoints["running"].status_hint,
                table.endpoints["stopped-0001"].status_hint,
                ",".join(sorted(started)),
            )

    assert asyncio.run(scenario()) == ("stopped", "running", "stopped-0001")


def test_a_quiet_pass_reads_the_store_once(database_url: str) -> None:
    """A pass that finds nothing to do publishes what it loaded instead of loading
    again: the idle cost of every endpoint that wants replicas, halved."""

    async def scenario() -> tuple[int, int]:
        async with installation(database_url, 3) as reconciler:
            for _ in range(PASSES):  # settle: the running endpoint's replica starts
                await reconciler.reconcile_once()
            loads = 0
            original = reconciler._load

            def counted() -> Any:
                nonlocal loads
                loads += 1
                return original()

            tables: list[RouteTable] = []
            reconciler.publish_routes = tables.append
            reconciler._load = counted  # type: ignore[method-assign]
            for _ in range(PASSES):
                await reconciler.reconcile_once()
            assert all(len(t.endpoints) == 4 for t in tables)
            return loads, len(tables)

    assert asyncio.run(scenario()) == (PASSES, PASSES)
