"""The autoscaler against a real store (SQLite and PostgreSQL), with a fake clock and
a scripted gateway demand: what it writes, what it records, what survives a restart,
and that a user's write made meanwhile wins."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from moorage.clock import FakeClock
from moorage.controller import autoscaler as autoscaler_module
from moorage.controller.autoscaler import Autoscaler
from moorage.models.autoscaling import ScalePolicy
from moorage.models.autoscaling import decide as real_decide
from moorage.models.demand import Demand, EndpointDemand
from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint
from moorage.models.events import EndpointChange
from moorage.models.states import EndpointEventKind
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.events import EventRepository
from moorage.wire import new_id

pytestmark = pytest.mark.anyio

POLICY = ScalePolicy(target=2, min_instances=1, max_instances=5, scale_down_delay_s=30, window_s=10)


def _endpoint(db: Database, clock: FakeClock, policy: ScalePolicy = POLICY) -> Endpoint:
    now = clock.now()
    with db.session() as session:
        user = AccountRepository(session).create_user(new_id(), is_admin=False, now=now)
        endpoint = Endpoint(
            service_id=new_id(),
            user_id=user.user_id,
            name="chat",
            description="",
            payment_type="usd",
            flavor_id="cpu",
            scale_type="auto",
            target_instance_number=1,
            deploy=DeploySpec(image_url="img", command="serve", port=8080),
            revision=1,
            desired_state=DesiredState.RUNNING,
            service_type="normal",
            created_at=now,
            updated_at=now,
            scale_policy=policy,
        )
        EndpointRepository(session).add(endpoint)
    return endpoint


def _count(db: Database, service_id: str) -> int:
    with db.session() as session:
        endpoint = EndpointRepository(session).get_live(service_id)
        assert endpoint is not None
        return endpoint.target_instance_number


class Gateway:
    """A gateway's counters under loads the test sets: requests in flight and held per
    endpoint, integrated over the fake clock as the dispatcher integrates them."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.in_flight: dict[str, int] = {}
        self.waiting: dict[str, int] = {}
        self._seen: dict[str, EndpointDemand] = {}
        self._at = clock.now().timestamp()

    def __call__(self) -> Demand:
        now = self.clock.now().timestamp()
        span, self._at = now - self._at, now
        for service_id in {*self.in_flight, *self.waiting, *self._seen}:
            before = self._seen.get(service_id, EndpointDemand())
            in_flight = self.in_flight.get(service_id, 0)
            waiting = self.waiting.get(service_id, 0)
            self._seen[service_id] = EndpointDemand(
                in_flight,
                waiting,
                held=before.held + (waiting > before.waiting) * (waiting - before.waiting),
                busy_s=before.busy_s + before.in_flight * span,
                waited_s=before.waited_s + before.waiting * span,
            )
        return Demand(dict(self._seen))


def _in_flight(clock: FakeClock, service_id: str, requests: Callable[[], int]) -> Gateway:
    """A gateway where ``requests()`` are in flight for the endpoint, read at each look."""

    class Following(Gateway):
        def __call__(self) -> Demand:
            demand = super().__call__()
            self.in_flight[service_id] = requests()  # from now on
            return demand

    gateway = Following(clock)
    gateway.in_flight[service_id] = requests()
    return gateway


async def _run_for(autoscaler: Autoscaler, clock: FakeClock, seconds: float) -> None:
    for _ in range(int(seconds / 0.5)):
        clock.advance(0.5)
        await autoscaler.look()


async def test_a_load_step_is_written_as_a_count_and_an_event_naming_why(db: Database) -> None:
    clock = FakeClock()
    endpoint = _endpoint(db, clock)
    load = {"now": 0}
    woken: list[int] = []
    autoscaler = Autoscaler(
        db,
        clock,
        _in_flight(clock, endpoint.service_id, lambda: load["now"]),
        on_change=lambda: woken.append(1),
    )
    await _run_for(autoscaler, clock, 5)
    assert _count(db, endpoint.service_id) == 1

    load["now"] = 8  # four replicas' worth at target 2
    await _run_for(autoscaler, clock, 3)

    assert _count(db, endpoint.service_id) == 4
    assert woken, "the controller is woken to start the replicas"
    with db.session() as session:
        events, _ = EventRepository(session).page(endpoint.service_id, offset=0, limit=10)
    scaled = [
        e for e in events if isinstance(e, EndpointChange) and e.kind is EndpointEventKind.SCALED
    ]
    assert scaled, events
    first, last = scaled[-1].message, scaled[0].message  # newest first
    assert first.startswith("autoscaled from 1 to "), first
    assert last.endswith("to 4 replicas", 0, last.index(":")), last
    assert "concurrency 8" in last, last
    assert "target 2 per replica" in last, last


async def test_a_restarted_autoscaler_scales_nothing_down_within_its_first_window(
    db: Database,
) -> None:
    clock = FakeClock()
    endpoint = _endpoint(db, clock)
    load = {"now": 8}
    first = Autoscaler(db, clock, _in_flight(clock, endpoint.service_id, lambda: load["now"]))
    await _run_for(first, clock, 3)
    assert _count(db, endpoint.service_id) == 4

    # moorage restarts: a new autoscaler, an idle gateway (its counters start at zero).
    load["now"] = 0
    restarted = Autoscaler(db, clock, _in_flight(clock, endpoint.service_id, lambda: load["now"]))
    await _run_for(restarted, clock, POLICY.window_s - 1)
    assert _count(db, endpoint.service_id) == 4, "waking up is no reason to scale down"

    await _run_for(restarted, clock, POLICY.scale_down_delay_s + POLICY.window_s)
    assert _count(db, endpoint.service_id) == 1, "idle past the delay: back to the minimum"


async def test_idle_past_the_delay_scales_to_zero_and_a_held_request_wakes_it(
    db: Database,
) -> None:
    clock = FakeClock()
    policy = dataclasses.replace(POLICY, min_instances=0, scale_down_delay_s=20)
    endpoint = _endpoint(db, clock, policy)
    gateway = Gateway(clock)
    autoscaler = Autoscaler(db, clock, gateway)
    await _run_for(autoscaler, clock, 19)
    assert _count(db, endpoint.service_id) == 1, "not before scale_down_delay_s"
    await _run_for(autoscaler, clock, 15)
    assert _count(db, endpoint.service_id) == 0

    gateway.waiting[endpoint.service_id] = 3  # requests held at the gateway
    clock.advance(0.1)
    await autoscaler.look()
    assert _count(db, endpoint.service_id) >= 1, "one look: the held requests start a replica"


async def test_a_users_write_made_meanwhile_wins(db: Database) -> None:
    clock = FakeClock()
    endpoint = _endpoint(db, clock)
    autoscaler = Autoscaler(db, clock, _in_flight(clock, endpoint.service_id, lambda: 8))
    await autoscaler.look()  # it knows the endpoint at 1
    with db.session() as session:  # its user switches it to manual at 2
        repository = EndpointRepository(session)
        current = repository.get_live(endpoint.service_id)
        assert current is not None
        repository.save(
            dataclasses.replace(
                current, scale_type="manual", scale_policy=None, target_instance_number=2
            )
        )
    await _run_for(autoscaler, clock, 3)
    assert _count(db, endpoint.service_id) == 2, "a manual endpoint is not autoscaled"


async def test_one_endpoint_that_cannot_be_decided_holds_up_no_other(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    broken, healthy = _endpoint(db, clock), _endpoint(db, clock)

    def decide_or_fail(
        policy: ScalePolicy, window: Any, observed: Any, state: Any, now: float
    ) -> Any:
        if observed is observations.get(broken.service_id):
            raise OverflowError("cannot convert float infinity to integer")
        return real_decide(policy, window, observed, state, now)

    observations: dict[str, Any] = {}
    real_observe = autoscaler_module.observe

    def observe(endpoint: Endpoint, replicas: Any, waiting: int) -> Any:
        observations[endpoint.service_id] = seen = real_observe(endpoint, replicas, waiting)
        return seen

    monkeypatch.setattr(autoscaler_module, "decide", decide_or_fail)
    monkeypatch.setattr(autoscaler_module, "observe", observe)
    gateway = Gateway(clock)
    gateway.in_flight = {broken.service_id: 8, healthy.service_id: 8}
    autoscaler = Autoscaler(db, clock, gateway)

    await _run_for(autoscaler, clock, 3)

    assert _count(db, healthy.service_id) == 4
    assert _count(db, broken.service_id) == 1
    failures = [r for r in caplog.records if "autoscaling endpoint" in r.getMessage()]
    assert len(failures) == 1, "said once, not at every look"
    assert broken.service_id in failures[0].getMessage()
