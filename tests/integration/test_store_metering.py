"""Usage in the store, on SQLite and PostgreSQL: rates fixed at placement, and
checkpoints that close each billed second into exactly one record, however often and
however concurrently they run."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from moorage.models.billing import GroupBy, usage_totals
from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint
from moorage.models.flavors import Flavor
from moorage.models.replicas import ReplicaEvent, ReplicaEventKind
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.flavors import FlavorRepository
from moorage.store.metering import Closed, _close, checkpoint_usage, replica_events
from moorage.store.replicas import ReplicaRepository
from moorage.store.tables import ReplicaRateRow, UsageRecordRow
from moorage.store.usage import stored_usage
from moorage.wire import new_id

T0 = datetime(2026, 5, 1, 9, 0, 0, 400_000, tzinfo=UTC)  # 09:00:00.4
FLAVOR = "f" * 32


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _price(db: Database, usd: float, at: float = 0) -> None:
    """The operator's flavor file, as synced at start: an H100 at ``usd`` per GPU-hour."""
    flavor = Flavor(FLAVOR, "H100", "local", "h100", capacity=8, node_max_gpu=8)
    flavor = dataclasses.replace(flavor, prices={"usd": usd, "nmt": 0.147164})
    with db.session() as session:
        FlavorRepository(session).sync([flavor], _at(at))


def _endpoint(db: Database, *, gpu_num: int = 2, payment_type: str = "usd") -> Endpoint:
    with db.session() as session:
        user = AccountRepository(session).create_user(new_id(), is_admin=False, now=T0)
        endpoint = Endpoint(
            service_id=new_id(),
            user_id=user.user_id,
            name="chat",
            description="",
            payment_type=payment_type,
            flavor_id=FLAVOR,
            scale_type="manual",
            target_instance_number=1,
            deploy=DeploySpec(image_url="img", command="serve", port=8080, gpu_num=gpu_num),
            revision=1,
            desired_state=DesiredState.RUNNING,
            service_type="normal",
            created_at=T0,
            updated_at=T0,
        )
        EndpointRepository(session).add(endpoint)
        EndpointRepository(session).add_revision(endpoint)
    return endpoint


def _replica(db: Database, endpoint: Endpoint, at: float = 0) -> str:
    replica_id = new_id()
    with db.session() as session:
        ReplicaRepository(session).create(replica_id, endpoint.service_id, 1, _at(at))
    return replica_id


def _record(db: Database, replica_id: str, endpoint: Endpoint, kind: str, at: float) -> None:
    event = ReplicaEvent(replica_id, endpoint.service_id, ReplicaEventKind(kind), _at(at))
    with db.session() as session:
        ReplicaRepository(session).record(event)


def _rate(db: Database, replica_id: str) -> ReplicaRateRow | None:
    with db.session() as session:
        return session.get(ReplicaRateRow, replica_id)


def _records(db: Database, replica_id: str | None = None) -> list[UsageRecordRow]:
    query = select(UsageRecordRow).order_by(UsageRecordRow.period_start)
    if replica_id is not None:
        query = query.where(UsageRecordRow.replica_id == replica_id)
    with db.session() as session:
        return list(session.scalars(query))


def _billed(db: Database, replica_id: str | None = None) -> int:
    return sum(r.seconds for r in _records(db, replica_id))


def test_a_rate_is_fixed_at_the_first_start_and_kept_through_restarts(db: Database) -> None:
    _price(db, 2.5)
    endpoint = _endpoint(db, gpu_num=2)
    replica_id = _replica(db, endpoint)
    assert _rate(db, replica_id) is None, "waiting for capacity fixes no rate"

    _record(db, replica_id, endpoint, "started", 60)
    _price(db, 4.0, at=90)  # the operator raises the price while it runs
    _record(db, replica_id, endpoint, "failed", 120)
    _record(db, replica_id, endpoint, "started", 180)

    rate = _rate(db, replica_id)
    assert rate is not None
    assert (rate.price_per_hour, rate.currency, rate.gpu_num) == (Decimal("2.5"), "usd", 2)
    assert (rate.endpoint_id, rate.user_id, rate.flavor_id) == (
        endpoint.service_id,
        endpoint.user_id,
        FLAVOR,
    )
    assert rate.placed_at == _at(60)
    assert rate.billed_until is None


def test_a_price_change_bills_only_replicas_placed_after_it(db: Database) -> None:
    _price(db, 2.5)
    endpoint = _endpoint(db, gpu_num=1)
    old = _replica(db, endpoint)
    _record(db, old, endpoint, "started", 0)
    _price(db, 3.6, at=10)
    new = _replica(db, endpoint, at=20)
    _record(db, new, endpoint, "started", 20)
    _record(db, old, endpoint, "stopped", 3600)
    _record(db, new, endpoint, "stopped", 3620)

    checkpoint_usage(db, _at(4000))

    with db.session() as session:
        usage = stored_usage(session, endpoint_ids=[endpoint.service_id])
        records, rates = usage.records, usage.rates
    by_replica = {rid: rate.price_per_hour for rid, rate in rates.items()}
    assert by_replica == {old: Decimal("2.5"), new: Decimal("3.6")}
    assert {r.replica_id: r.cost for r in _records(db)} == {
        old: Decimal("2.500000"),
        new: Decimal("3.600000"),
    }
    (total,) = usage_totals(records, rates, GroupBy.ENDPOINT, _at(-86400), _at(86400))
    assert (total.instance_seconds, total.costs["usd"]) == (7200, Decimal("6.100000"))


def test_the_usd_example_is_stored_to_the_second_and_the_cent(db: Database) -> None:
    """docs/billing.md: H100 at 2.5 usd, gpu_num 2, placed 09:00:00.4, requested two
    minutes before, stopped 10:30:00.9: 5400 s, 10 800 GPU-seconds, 7.500000 usd."""
    _price(db, 2.5)
    endpoint = _endpoint(db, gpu_num=2)
    replica_id = _replica(db, endpoint, at=-120)
    _record(db, replica_id, endpoint, "started", 0)
    _record(db, replica_id, endpoint, "ready", 180)
    _record(db, replica_id, endpoint, "stopped", 5400.5)

    closed = checkpoint_usage(db, _at(6000))

    assert closed == Closed(replicas=1, records=1, seconds=5400)
    (record,) = _records(db)
    assert (record.seconds, record.gpu_seconds, record.cost) == (5400, 10800, Decimal("7.5"))
    assert (record.currency, record.day) == ("usd", date(2026, 5, 1))


def test_a_checkpoint_run_twice_bills_once(db: Database) -> None:
    _price(db, 2.5)
    endpoint = _endpoint(db)
    replica_id = _replica(db, endpoint)
    _record(db, replica_id, endpoint, "started", 0)

    first = checkpoint_usage(db, _at(100))
    again = checkpoint_usage(db, _at(100))
    behind = checkpoint_usage(db, _at(50))  # a clock that stepped back

    assert first.seconds == 100
    assert again == Closed()
    assert behind == Closed()
    assert _billed(db) == 100
    rate = _rate(db, replica_id)
    assert rate is not None
    assert rate.billed_until == T0.replace(microsecond=0) + timedelta(seconds=100)
    # Later checkpoints bill only what came after, and add it to the day's record.
    checkpoint_usage(db, _at(250))
    _record(db, replica_id, endpoint, "stopped", 300)
    checkpoint_usage(db, _at(400))
    assert _billed(db) == 300
    assert [r.seconds for r in _records(db)] == [300]


def test_a_checkpoint_that_lost_the_race_writes_nothing(db: Database) -> None:
    """Two moorage processes checkpoint at once: the one whose read of billed_until is
    stale by the time it writes updates no row and stores none of its records."""
    _price(db, 2.5)
    endpoint = _endpoint(db)
    replica_id = _replica(db, endpoint)
    _record(db, replica_id, endpoint, "started", 0)
    with db.session() as slow:
        stale = slow.get(ReplicaRateRow, replica_id)
        assert stale is not None
        events = replica_events(slow, [replica_id])[replica_id]

        assert checkpoint_usage(db, _at(100)).seconds == 100  # the other process wins

        assert _close(slow, stale, False, events, _at(100)) == Closed()
    assert _billed(db) == 100
    assert len(_records(db)) == 1


def test_concurrent_checkpoints_bill_each_second_once(db: Database) -> None:
    _price(db, 2.5)
    endpoint = _endpoint(db)
    replicas = [_replica(db, endpoint) for _ in range(5)]
    for replica_id in replicas:
        _record(db, replica_id, endpoint, "started", 0)
    errors: list[BaseException] = []

    def run(at: float) -> None:
        try:
            checkpoint_usage(db, _at(at), batch=2)
        except BaseException as exc:  # the test reports it, not the thread
            errors.append(exc)

    for step in range(1, 6):
        threads = [threading.Thread(target=run, args=(step * 60,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)

    assert not errors, errors
    assert {rid: _billed(db, rid) for rid in replicas} == dict.fromkeys(replicas, 300)


def test_records_are_split_at_utc_midnight(db: Database) -> None:
    _price(db, 2.5)
    endpoint = _endpoint(db, gpu_num=1)
    replica_id = _replica(db, endpoint)
    before_midnight = (datetime(2026, 5, 2, tzinfo=UTC) - T0).total_seconds() - 1800
    _record(db, replica_id, endpoint, "started", before_midnight)  # 23:30:00
    _record(db, replica_id, endpoint, "stopped", before_midnight + 3600)  # 00:30:00

    checkpoint_usage(db, _at(before_midnight + 7200))

    records = _records(db)
    assert [(r.day, r.seconds) for r in records] == [
        (date(2026, 5, 1), 1800),
        (date(2026, 5, 2), 1800),
    ]
    assert records[0].period_end == datetime(2026, 5, 2, tzinfo=UTC)
    assert records[1].period_start == datetime(2026, 5, 2, tzinfo=UTC)


def test_a_replica_billed_without_a_break_keeps_one_record_a_day(db: Database) -> None:
    _price(db, 2.5)
    endpoint = _endpoint(db, gpu_num=2)
    replica_id = _replica(db, endpoint)
    _record(db, replica_id, endpoint, "started", 0)  # 09:00:00.4
    for minute in range(1, 61):
        checkpoint_usage(db, _at(minute * 60))
    _record(db, replica_id, endpoint, "failed", 3630)  # a crash, then a restart
    _record(db, replica_id, endpoint, "started", 3640)
    checkpoint_usage(db, _at(3700))
    _record(db, replica_id, endpoint, "stopped", 3750)
    checkpoint_usage(db, _at(3800))

    records = _records(db, replica_id)
    assert [(r.seconds, r.gpu_seconds, r.cost) for r in records] == [
        (3630, 7260, Decimal("5.041667")),  # 2.5 x 2 x 3630 / 3600
        (110, 220, Decimal("0.152778")),
    ]
    assert records[0].period_start == datetime(2026, 5, 1, 9, 0, 0, tzinfo=UTC)
    assert records[0].period_end == datetime(2026, 5, 1, 10, 0, 30, tzinfo=UTC)


def test_a_stopped_and_billed_replica_is_settled_and_skipped(db: Database) -> None:
    _price(db, 2.5)
    endpoint = _endpoint(db)
    replica_id = _replica(db, endpoint)
    _record(db, replica_id, endpoint, "started", 0)
    _record(db, replica_id, endpoint, "stopped", 60)

    assert checkpoint_usage(db, _at(120)).replicas == 1
    rate = _rate(db, replica_id)
    assert rate is not None
    assert rate.settled

    assert checkpoint_usage(db, _at(86400)) == Closed()
    assert _billed(db) == 60


def test_a_deleted_endpoint_keeps_its_usage(db: Database) -> None:
    _price(db, 2.5)
    endpoint = _endpoint(db, gpu_num=1)
    replica_id = _replica(db, endpoint)
    _record(db, replica_id, endpoint, "started", 0)
    checkpoint_usage(db, _at(600))
    _record(db, replica_id, endpoint, "stopped", 900)
    with db.session() as session:
        EndpointRepository(session).save(dataclasses.replace(endpoint, deleted_at=_at(901)))

    checkpoint_usage(db, _at(1000))

    with db.session() as session:
        assert EndpointRepository(session).get_live(endpoint.service_id) is None
        usage = stored_usage(session, user_id=endpoint.user_id)
        records, rates = usage.records, usage.rates
    (total,) = usage_totals(records, rates, GroupBy.ENDPOINT, _at(-60), _at(86400))
    assert total.key == endpoint.service_id
    assert (total.instance_seconds, total.costs["usd"]) == (900, Decimal("0.625000"))


def test_an_exact_price_survives_the_store(db: Database) -> None:
    """nmt 0.147164 is stored and read back exactly, on SQLite too."""
    _price(db, 2.5)
    endpoint = _endpoint(db, gpu_num=1, payment_type="nmt")
    replica_id = _replica(db, endpoint)
    _record(db, replica_id, endpoint, "started", 0)
    _record(db, replica_id, endpoint, "stopped", 120)

    checkpoint_usage(db, _at(200))

    rate = _rate(db, replica_id)
    assert rate is not None
    assert rate.price_per_hour == Decimal("0.147164")
    (record,) = _records(db)
    assert (record.currency, record.cost) == ("nmt", Decimal("0.004905"))
