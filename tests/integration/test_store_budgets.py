"""Spending limits in the store, on SQLite and PostgreSQL: limits kept exactly, the
spend read to the second (seconds not checkpointed yet included), and the check that
stops a user's running endpoints in a currency once their limit there is reached."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from moorage.clock import FakeClock
from moorage.controller.budgets import BudgetEnforcer, enforce_budgets
from moorage.errors import InvalidField, NotFound, PaymentRequired
from moorage.models.budgets import Budget, BudgetPeriod, BudgetState
from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint
from moorage.models.flavors import Flavor
from moorage.models.replicas import ReplicaEvent, ReplicaEventKind
from moorage.models.requests import UpdateEndpointRequest
from moorage.models.states import EndpointEventKind
from moorage.models.status import StatusPolicy
from moorage.services.budgets import BudgetService, budget_statuses_for, check_budget
from moorage.services.endpoints import EndpointService
from moorage.store.accounts import AccountRepository
from moorage.store.budgets import BudgetRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.events import EventRepository
from moorage.store.flavors import FlavorRepository
from moorage.store.metering import checkpoint_usage
from moorage.store.replicas import ReplicaRepository
from moorage.wire import new_id

# 30 minutes before a month ends.
T0 = datetime(2026, 5, 31, 23, 30, tzinfo=UTC)
FLAVOR = "f" * 32


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _setup(db: Database) -> str:
    """A flavor at 3.6 usd and 36 cny per GPU-hour (0.001 usd, 0.01 cny a second), and
    a user."""
    flavor = Flavor(FLAVOR, "H100", "local", "h100", capacity=8, node_max_gpu=8)
    flavor = dataclasses.replace(flavor, prices={"usd": 3.6, "cny": 36.0})
    with db.session() as session:
        FlavorRepository(session).sync([flavor], T0)
        return AccountRepository(session).create_user("alice", is_admin=False, now=T0).user_id


def _running(db: Database, user_id: str, currency: str = "usd") -> Endpoint:
    """An endpoint whose one replica started at T0."""
    endpoint = Endpoint(
        service_id=new_id(),
        user_id=user_id,
        name=f"chat-{new_id()[:6]}",
        description="",
        payment_type=currency,
        flavor_id=FLAVOR,
        scale_type="manual",
        target_instance_number=1,
        deploy=DeploySpec(image_url="img", command="serve", port=8080, gpu_num=1),
        revision=1,
        desired_state=DesiredState.RUNNING,
        service_type="normal",
        created_at=T0,
        updated_at=T0,
    )
    replica_id = new_id()
    with db.session() as session:
        EndpointRepository(session).add(endpoint)
        EndpointRepository(session).add_revision(endpoint)
        ReplicaRepository(session).create(replica_id, endpoint.service_id, 1, T0)
    started = ReplicaEvent(replica_id, endpoint.service_id, ReplicaEventKind.STARTED, T0)
    with db.session() as session:
        ReplicaRepository(session).record(started)
    return endpoint


def _put(db: Database, user_id: str, budget: Budget) -> None:
    with db.session() as session:
        BudgetRepository(session).put(user_id, budget, T0)


def _endpoint(db: Database, service_id: str) -> Endpoint:
    with db.session() as session:
        found = EndpointRepository(session).get_live(service_id)
    assert found is not None
    return found


def test_a_limit_is_kept_exactly_replaced_and_deleted(db: Database) -> None:
    user_id = _setup(db)
    exact = Budget("usd", Decimal("999999999999.999999"), Decimal("0.000001"))
    _put(db, user_id, exact)
    _put(db, user_id, Budget("cny", Decimal(10), Decimal(8), BudgetPeriod.TOTAL))
    _put(db, user_id, Budget("cny", Decimal(20), Decimal(15), BudgetPeriod.TOTAL))

    with db.session() as session:
        budgets = BudgetRepository(session)
        assert budgets.for_user(user_id) == [
            Budget("cny", Decimal(20), Decimal(15), BudgetPeriod.TOTAL),
            exact,
        ]
        assert list(budgets.by_user()) == [user_id]
        assert budgets.delete(user_id, "cny")
        assert not budgets.delete(user_id, "cny")
        assert budgets.for_user(user_id) == [exact]


def test_the_spend_counts_seconds_not_checkpointed_yet_and_the_period(db: Database) -> None:
    user_id = _setup(db)
    _running(db, user_id, "usd")
    _running(db, user_id, "cny")
    checkpoint_usage(db, _at(600))  # 10 minutes stored; the rest read to the second

    with db.session() as session:
        budgets = BudgetRepository(session)
        spend = budgets.spend_since(user_id, T0, _at(900))
        # 23:30 to 00:15: 1800 s in May, 900 s in June.
        june = budgets.spend_since(user_id, datetime(2026, 6, 1, tzinfo=UTC), _at(2700))
    assert spend == {"usd": Decimal("0.9"), "cny": Decimal(9), "nmt": Decimal(0)}
    assert june == {"usd": Decimal("0.9"), "cny": Decimal(9), "nmt": Decimal(0)}

    _put(db, user_id, Budget("usd", Decimal(2), Decimal("1.5")))
    _put(db, user_id, Budget("cny", Decimal(20), Decimal(15), BudgetPeriod.TOTAL))
    with db.session() as session:
        statuses = budget_statuses_for(session, user_id, _at(2700))
    assert [(s.budget.currency, s.spent, s.state) for s in statuses] == [
        ("cny", Decimal(27), BudgetState.EXCEEDED),  # all time: 45 minutes
        ("usd", Decimal("0.9"), BudgetState.OK),  # June's 15 minutes only
    ]


def test_a_reached_limit_stops_running_endpoints_in_its_currency_only(db: Database) -> None:
    user_id = _setup(db)
    usd = _running(db, user_id, "usd")
    cny = _running(db, user_id, "cny")
    _put(db, user_id, Budget("usd", Decimal(1), Decimal("0.8")))

    assert enforce_budgets(db, _at(999)) == [], "0.999 usd spent: under the limit"
    stopped = enforce_budgets(db, _at(1000))

    assert [(e.service_id, c.kind) for e, c in stopped] == [
        (usd.service_id, EndpointEventKind.STOPPED)
    ]
    after = _endpoint(db, usd.service_id)
    reason = "spending limit reached: 1 usd spent of the 1 usd limit; the admin can raise it"
    assert (after.desired_state, after.stop_reason) == (DesiredState.STOPPED, reason)
    assert _endpoint(db, cny.service_id).desired_state is DesiredState.RUNNING
    with db.session() as session:
        events, _total = EventRepository(session).page(usd.service_id, offset=0, limit=10)
    assert events[0].message == f"stopped by moorage: {reason}; its replicas stop"
    assert enforce_budgets(db, _at(1100)) == [], "stopped once"


def test_a_limit_stops_an_endpoint_whose_replicas_bill_in_its_currency(db: Database) -> None:
    """An endpoint whose payment_type says cny while its replica bills at a usd rate
    (a store written before a running endpoint's currency was fixed) is held to usd."""
    user_id = _setup(db)
    moved = _running(db, user_id, "usd")
    with db.session() as session:
        EndpointRepository(session).save(dataclasses.replace(moved, payment_type="cny"))
    _put(db, user_id, Budget("usd", Decimal(1), Decimal("0.8")))

    stopped = enforce_budgets(db, _at(1000))

    assert [e.service_id for e, _change in stopped] == [moved.service_id]
    assert _endpoint(db, moved.service_id).desired_state is DesiredState.STOPPED


def test_a_refusal_names_the_limit_until_the_admin_raises_it(db: Database) -> None:
    user_id = _setup(db)
    _running(db, user_id, "usd")
    clock = FakeClock(_at(1000))
    service = BudgetService(db, clock)
    service.put(user_id, "usd", Decimal(1), None, BudgetPeriod.MONTH)

    with db.session() as session, pytest.raises(PaymentRequired) as refused:
        check_budget(session, user_id, "usd", clock.now())
    assert refused.value.status_code == 402
    assert refused.value.code == "budget_exceeded"
    assert "1 usd limit; the admin can raise it" in refused.value.message
    with db.session() as session:
        check_budget(session, user_id, "cny", clock.now())  # another currency is free

    raised = service.put(user_id, "usd", Decimal("1.5"), None, BudgetPeriod.MONTH)
    assert (raised.budget.warning, raised.state) == (Decimal("1.2"), BudgetState.OK)
    with db.session() as session:
        check_budget(session, user_id, "usd", clock.now())


def test_an_unknown_user_or_budget_is_not_found(db: Database) -> None:
    user_id = _setup(db)
    service = BudgetService(db, FakeClock(T0))

    with pytest.raises(NotFound, match="no user 'nobody'"):
        service.statuses("nobody")
    with pytest.raises(NotFound, match="no user 'nobody'"):
        service.put("nobody", "usd", Decimal(1), None, BudgetPeriod.MONTH)
    with pytest.raises(NotFound, match="has no budget in 'usd'"):
        service.delete(user_id, "usd")
    assert service.statuses(user_id) == ()


@pytest.mark.anyio
async def test_the_enforcer_wakes_the_controller_when_it_stops_something(db: Database) -> None:
    user_id = _setup(db)
    _running(db, user_id, "usd")
    _put(db, user_id, Budget("usd", Decimal(1), Decimal("0.8")))
    woken: list[bool] = []
    clock = FakeClock(_at(10))
    enforcer = BudgetEnforcer(db, clock, interval_s=1, on_stop=lambda: woken.append(True))

    assert await enforcer.enforce() == []
    clock.advance(1000)
    assert len(await enforcer.enforce()) == 1
    assert woken == [True]


def test_a_scale_up_of_a_running_endpoint_is_refused_a_scale_down_is_not(db: Database) -> None:
    user_id = _setup(db)
    usd = _running(db, user_id, "usd")
    cny = _running(db, user_id, "cny")
    with db.session() as session:
        user = AccountRepository(session).user_by_id(user_id)
    assert user is not None
    clock = FakeClock(_at(1000))
    service = EndpointService(db, clock, StatusPolicy(), max_instances=8)
    BudgetService(db, clock).put(user_id, "usd", Decimal(1), None, BudgetPeriod.MONTH)

    def update(endpoint: Endpoint, body: dict[str, Any]) -> Endpoint:
        request = UpdateEndpointRequest.model_validate(body)
        return service.update(user, endpoint.service_id, request).endpoint

    def scale(endpoint: Endpoint, replicas: int) -> Endpoint:
        return update(endpoint, {"resource_metadata": {"target_instance_number": replicas}})

    with pytest.raises(PaymentRequired, match="the admin can raise it"):
        scale(usd, 2)
    # A rollout places new replicas at today's rates (another flavor, more GPUs): refused
    # as a create is.
    with pytest.raises(PaymentRequired, match="the admin can raise it"):
        update(usd, {"deploy_metadata": {"gpu_num": 2}})
    assert _endpoint(db, usd.service_id).deploy.gpu_num == 1, "nothing changed"
    # A running endpoint keeps its currency (its replicas are billed in it), limit or not.
    with pytest.raises(InvalidField, match="payment_type: cannot change while the endpoint runs"):
        update(cny, {"payment_type": "usd"})
    assert _endpoint(db, usd.service_id).target_instance_number == 1, "nothing changed"
    assert _endpoint(db, cny.service_id).payment_type == "cny"
    assert scale(cny, 2).target_instance_number == 2, "another currency is free"
    assert update(usd, {"description": "renamed"}).description == "renamed"

    service.set_running(user, usd.service_id, False)
    assert scale(usd, 2).target_instance_number == 2, "a stopped endpoint runs nothing"
