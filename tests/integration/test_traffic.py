"""An endpoint's traffic counters through the store (SQLite and PostgreSQL): standalone
gateways' reports carry them, a store from before they existed reads them as 0, and
``TrafficService`` sums this process's gateway with fresh reports for the owner only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from moorage.clock import FakeClock
from moorage.errors import NotFound
from moorage.models.accounts import User
from moorage.models.demand import REPORT_FRESH_FOR, Demand, EndpointDemand
from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint
from moorage.services.demand import DemandService
from moorage.services.traffic import TrafficService
from moorage.store.accounts import AccountRepository
from moorage.store.db import MIGRATIONS_DIR, Database
from moorage.store.demand import DemandRepository
from moorage.store.endpoints import EndpointRepository
from moorage.wire import new_id

SEEN = EndpointDemand(in_flight=1, arrived=9, answered=8, errors=2, latency_s=4.5)


def _owner_of_endpoint(db: Database, now: datetime) -> tuple[User, str]:
    with db.session() as session:
        user = AccountRepository(session).create_user(new_id(), is_admin=False, now=now)
        endpoint = Endpoint(
            service_id=new_id(),
            user_id=user.user_id,
            name="chat",
            description="",
            payment_type="usd",
            flavor_id="cpu",
            scale_type="manual",
            target_instance_number=1,
            deploy=DeploySpec(image_url="img", command="serve", port=8080),
            revision=1,
            desired_state=DesiredState.RUNNING,
            service_type="normal",
            created_at=now,
            updated_at=now,
        )
        EndpointRepository(session).add(endpoint)
    return user, endpoint.service_id


def _stranger(db: Database, now: datetime) -> User:
    with db.session() as session:
        return AccountRepository(session).create_user(new_id(), is_admin=False, now=now)


def test_reports_carry_the_traffic_counters_for_each_endpoint(db: Database) -> None:
    clock = FakeClock()
    service = DemandService(db, clock)
    service.report("gw-a:1", {"ep1": SEEN, "ep2": EndpointDemand(answered=1)})
    service.report("gw-b:1", {"ep1": EndpointDemand(answered=1, errors=1, latency_s=0.5)})
    with db.session() as session:
        reports = DemandRepository(session).reports_of("ep1", clock.now() - REPORT_FRESH_FOR)
    total = Demand().plus({"ep1": report} for report in reports).of("ep1")
    assert (total.answered, total.errors, total.latency_s) == (9, 3, 5.0)
    assert total.arrived == 9


def test_a_store_from_before_the_counters_reads_them_as_zero(database_url: str) -> None:
    db = Database(database_url)
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0013")
            connection.execute(
                text(
                    "INSERT INTO gateway_demand (gateway_id, service_id, in_flight, waiting,"
                    " arrived, held, busy_s, waited_s, reported_at)"
                    " VALUES ('gw', 'ep', 1, 0, 7, 0, 1.5, 0, :at)"
                ),
                {"at": datetime(2026, 12, 3, 12, 0, 0)},
            )
        db.migrate()
        db.migrate()  # idempotent
        with db.session() as session:
            [report] = DemandRepository(session).reports_since(
                datetime(2026, 12, 3, 11, tzinfo=UTC)
            )
        assert report["ep"] == EndpointDemand(in_flight=1, arrived=7, busy_s=1.5)
    finally:
        db.dispose()


@pytest.mark.anyio
async def test_the_owner_reads_this_gateway_plus_fresh_reports_and_nobody_else_does(
    db: Database,
) -> None:
    clock = FakeClock()
    owner, service_id = _owner_of_endpoint(db, clock.now())
    local = Demand({service_id: SEEN, "other": EndpointDemand(answered=100)})
    traffic = TrafficService(db, clock, lambda: local)
    reports = DemandService(db, clock)
    reports.report("gw-old:1", {service_id: EndpointDemand(answered=50)})
    clock.advance(REPORT_FRESH_FOR.total_seconds() + 1)  # that gateway went away
    reports.report("gw-a:1", {service_id: EndpointDemand(waiting=2, arrived=3, answered=1)})

    seen = await traffic.of(owner, service_id)
    assert seen.service_id == service_id
    assert seen.at == clock.now()
    assert seen.seen == EndpointDemand(
        in_flight=1, waiting=2, arrived=12, answered=9, errors=2, latency_s=4.5
    )

    for caller, asked in ((_stranger(db, clock.now()), service_id), (owner, new_id())):
        with pytest.raises(NotFound) as refused:
            await traffic.of(caller, asked)
        assert asked in str(refused.value)
