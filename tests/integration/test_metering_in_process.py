"""Usage of replicas the controller really runs: the reconciler, the fake runtime, a
fake clock and SQLite, with checkpoints taken by the metering task along the way.

Each test checks what the usage records say against the replicas' recorded lives,
billed tick by tick by a plain oracle here: every second from a ``started`` to the
next ``failed`` or ``stopped``, to the second.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import delete, select

from moorage.controller.metering import Metering
from moorage.models.billing import GroupBy, usage_totals
from moorage.models.endpoints import DesiredState, Endpoint
from moorage.models.flavors import Flavor
from moorage.models.metering import tick
from moorage.store.endpoints import EndpointRepository
from moorage.store.flavors import FlavorRepository
from moorage.store.heartbeats import CONTROLLER, last_heartbeat
from moorage.store.metering import Closed
from moorage.store.tables import HeartbeatRow, ReplicaEventRow
from moorage.store.usage import stored_usage
from tests.integration.test_reconciler import Control, MakeControl, make_control

__all__ = ["make_control"]  # the fixture, used by name

pytestmark = pytest.mark.anyio

# 3.6 usd an hour: a thousandth of a dollar a second.
FLAVOR = Flavor("f" * 32, "cpu", "local", "cpu", capacity=8, node_max_gpu=0, prices={"usd": 3.6})


def _declare(control: Control) -> None:
    with control.db.session() as session:
        FlavorRepository(session).sync([FLAVOR], control.clock.now())


def _save(control: Control, endpoint: Endpoint, **changes: object) -> None:
    with control.db.session() as session:
        current = EndpointRepository(session).get_live(endpoint.service_id)
        assert current is not None
        EndpointRepository(session).save(dataclasses.replace(current, **changes))  # type: ignore[arg-type]


def _oracle(control: Control) -> dict[str, int]:
    """Each replica's billed seconds from its events, counted tick by tick."""
    with control.db.session() as session:
        rows = session.execute(
            select(ReplicaEventRow.replica_id, ReplicaEventRow.kind, ReplicaEventRow.at).order_by(
                ReplicaEventRow.event_id
            )
        ).all()
    opened: dict[str, datetime] = {}
    billed: dict[str, int] = defaultdict(int)
    for replica_id, kind, at in rows:
        if kind == "started" and replica_id not in opened:
            opened[replica_id] = at
        elif kind in ("failed", "stopped") and replica_id in opened:
            start = int(opened.pop(replica_id).timestamp())
            billed[replica_id] += int(at.timestamp()) - start
    assert not opened, f"replicas still billing: {sorted(opened)}"
    return dict(billed)


def _stored(control: Control) -> dict[str, int]:
    with control.db.session() as session:
        usage = stored_usage(session)
        records, _rates = usage.records, usage.rates
    billed: dict[str, int] = defaultdict(int)
    for record in records:
        billed[record.replica_id] += record.seconds
    return dict(billed)


async def test_start_scale_crash_restart_and_stop_are_billed_to_the_second(
    make_control: MakeControl,
) -> None:
    control = make_control()
    _declare(control)
    metering = Metering(control.db, control.clock, interval_s=60)
    endpoint = control.create(target=1)
    await control.until(lambda: control.ready(endpoint.service_id), "ready")
    control.clock.advance(3600)  # an hour of serving
    await metering.checkpoint()

    _save(control, endpoint, target_instance_number=2)
    await control.until(lambda: len(control.ready(endpoint.service_id)) == 2, "scaled to two")
    control.clock.advance(600)
    await metering.checkpoint()

    crashed = control.ready(endpoint.service_id)[0].replica_id
    control.runtime.crash(crashed, 137, "Killed")
    await control.step()
    await control.until(lambda: len(control.ready(endpoint.service_id)) == 2, "restarted")
    await metering.checkpoint()
    await metering.checkpoint()  # repeated: bills nothing more

    await control.restart()  # moorage killed: its replicas run on, the store keeps all
    metering = Metering(control.db, control.clock, interval_s=60)
    await control.step()
    control.clock.advance(300)
    await metering.checkpoint()

    _save(control, endpoint, desired_state=DesiredState.STOPPED)
    await control.until(lambda: not control.replicas(endpoint.service_id), "stopped")
    await metering.shutdown()  # the checkpoint at shutdown closes the stops

    expected = _oracle(control)
    assert _stored(control) == expected
    first, second = sorted(expected.values(), reverse=True)
    assert first >= 3600 + 600 + 300, "the first replica's hour and more"
    assert second >= 600 + 300
    with control.db.session() as session:
        usage = stored_usage(session, endpoint_ids=[endpoint.service_id])
        records, rates = usage.records, usage.rates
    (total,) = usage_totals(
        records, rates, GroupBy.ENDPOINT, datetime(2025, 1, 1, tzinfo=UTC), control.clock.now()
    )
    assert total.instance_seconds == first + second
    assert total.costs["usd"] == Decimal(first + second) / 1000
    assert await metering.checkpoint() == Closed(), "all settled: nothing more to bill"


async def _die_while_moorage_is_down(
    control: Control, *, heartbeat: bool
) -> tuple[str, datetime, datetime]:
    """A replica serves, moorage is killed, the replica dies, and after 900 s moorage
    starts again and stops the endpoint. Answers the replica, moorage's last sign of
    life (the previous run's last pass) and when it started again."""
    _declare(control)
    metering = Metering(control.db, control.clock, interval_s=60)
    endpoint = control.create(target=1)
    await control.until(lambda: control.ready(endpoint.service_id), "ready")
    control.clock.advance(100)
    await control.step(0)  # the last pass before moorage is killed
    last_seen = control.clock.now()
    await metering.checkpoint()
    [replica] = control.ready(endpoint.service_id)
    with control.db.session() as session:
        assert last_heartbeat(session, CONTROLLER) == last_seen
        if not heartbeat:  # a store written by a moorage that wrote none
            session.execute(delete(HeartbeatRow))

    control.clock.advance(0.6)
    await control.restart()  # moorage is killed ...
    control.runtime.crash(replica.replica_id, 137, "Killed")  # ... the replica dies ...
    control.clock.advance(900)  # ... and moorage starts again 900 s later
    restarted_at = control.clock.now()
    await control.step(0)
    _save(control, endpoint, desired_state=DesiredState.STOPPED)
    await control.until(lambda: not control.replicas(endpoint.service_id), "stopped")
    await Metering(control.db, control.clock, interval_s=60).shutdown()
    assert _stored(control) == _oracle(control)
    return replica.replica_id, last_seen, restarted_at


def _events(control: Control, replica_id: str) -> list[tuple[str, datetime, str | None]]:
    with control.db.session() as session:
        return [
            (kind, at, detail)
            for kind, at, detail in session.execute(
                select(ReplicaEventRow.kind, ReplicaEventRow.at, ReplicaEventRow.detail)
                .where(ReplicaEventRow.replica_id == replica_id)
                .order_by(ReplicaEventRow.event_id)
            ).tuples()
        ]


async def test_a_replica_that_died_while_moorage_was_down_is_billed_up_to_moorages_last_heartbeat(
    make_control: MakeControl,
) -> None:
    """The runtime cannot say when a replica died while moorage was down; moorage's
    last heartbeat says it was alive until then. Billing closes there, to the second,
    and the downtime is not billed; the event says when it was found."""
    control = make_control()
    replica_id, last_seen, _ = await _die_while_moorage_is_down(control, heartbeat=True)

    events = _events(control, replica_id)
    started = next(at for kind, at, _ in events if kind == "started")
    [(at, detail)] = [(at, detail) for kind, at, detail in events if kind == "failed"]
    assert at == last_seen, "closed at the previous run's last heartbeat"
    assert "while moorage was down" in (detail or "")
    assert [at for _, at, _ in events] == sorted(at for _, at, _ in events), "in order"
    assert _stored(control)[replica_id] == tick(last_seen) - tick(started)
    assert _stored(control)[replica_id] < 900, "the downtime is not billed"


async def test_without_a_heartbeat_a_replica_that_died_while_down_is_billed_until_seen_gone(
    make_control: MakeControl,
) -> None:
    """A store with no heartbeat (written before moorage kept one): the failure is
    recorded, and billing closed, by the first pass after the restart."""
    control = make_control()
    replica_id, _, restarted_at = await _die_while_moorage_is_down(control, heartbeat=False)

    failed = [at for kind, at, _ in _events(control, replica_id) if kind == "failed"]
    assert failed == [restarted_at], "closed when the restarted controller recorded it"
    assert _stored(control)[replica_id] >= 900


async def test_the_metering_task_checkpoints_on_its_interval_and_at_shutdown(
    make_control: MakeControl,
) -> None:
    control = make_control()
    _declare(control)
    endpoint = control.create(target=1)
    await control.until(lambda: control.ready(endpoint.service_id), "ready")
    metering = Metering(control.db, control.clock, interval_s=0.05)
    metering.start()
    try:
        control.clock.advance(120)
        await control.until(lambda: sum(_stored(control).values()) >= 120, "a checkpoint ran")
    finally:
        await metering.shutdown()
    _save(control, endpoint, desired_state=DesiredState.STOPPED)
    await control.until(lambda: not control.replicas(endpoint.service_id), "stopped")
    await metering.shutdown()
    assert _stored(control) == _oracle(control)
