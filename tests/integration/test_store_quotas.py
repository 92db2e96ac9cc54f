"""Per-user quotas on a real store (SQLite and PostgreSQL): overrides over defaults, the
usage they are checked against, and a refused write that changes nothing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from moorage.clock import FakeClock
from moorage.errors import Forbidden, NotFound
from moorage.models.accounts import User
from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint
from moorage.models.flavors import Flavor
from moorage.models.requests import QuotaPatch
from moorage.services.quotas import Quotas, QuotaService
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.flavors import FlavorRepository
from moorage.store.quotas import QuotaRepository

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEFAULTS = Quotas(
    endpoints=2,
    replicas=3,
    flavor_share=0.5,
    command_bytes=1024,
    env_vars=8,
    env_bytes=1024,
    name_chars=32,
    description_chars=64,
    log_followers=4,
    secrets=2,
)


def _user(db: Database, name: str, *, is_admin: bool = False) -> User:
    with db.session() as session:
        return AccountRepository(session).create_user(name, is_admin=is_admin, now=T0)


def _flavor(db: Database, capacity: int) -> str:
    flavor = Flavor(
        flavor_id="f" * 32,
        display_name="CPU",
        cluster_id="local",
        cluster_flavor_id="local_cpu",
        meta_info={},
        prices={"usd": 0.05, "cny": 0.36, "nmt": 0.02},
        capacity=capacity,
        node_max_gpu=0,
    )
    with db.session() as session:
        FlavorRepository(session).sync([flavor], T0)
    return flavor.flavor_id


def _endpoint(user: User, flavor_id: str, n: int, target: int = 1, **changes: object) -> Endpoint:
    endpoint = Endpoint(
        service_id=f"{n:032d}",
        user_id=user.user_id,
        name=f"e{n}",
        description="",
        payment_type="usd",
        flavor_id=flavor_id,
        scale_type="manual",
        target_instance_number=target,
        deploy=DeploySpec(image_url="local", command="sleep 600", port=8000),
        revision=1,
        desired_state=DesiredState.RUNNING,
        service_type="normal",
        created_at=T0,
        updated_at=T0,
    )
    return dataclasses.replace(endpoint, **changes)  # type: ignore[arg-type]


def _write(db: Database, service: QuotaService, user: User, endpoint: Endpoint) -> None:
    """What the endpoint service does: check in the writing transaction, then write."""
    with db.session() as session:
        repository = EndpointRepository(session)
        current = repository.get_live(endpoint.service_id)
        service.check(session, user, endpoint, current)
        if current is None:
            repository.add(endpoint)
        else:
            repository.save(endpoint)


def test_overrides_sit_on_defaults_and_null_restores_them(db: Database) -> None:
    alice = _user(db, "alice")
    service = QuotaService(db, FakeClock(), DEFAULTS)
    assert service.limits(alice.user_id) == DEFAULTS

    view = service.update(alice.user_id, QuotaPatch(replicas=10, flavor_share=0.75))
    assert view.limits == dataclasses.replace(DEFAULTS, replicas=10, flavor_share=0.75)
    assert view.custom == {"replicas", "flavor_share"}
    assert service.limits(alice.user_id).replicas == 10

    view = service.update(alice.user_id, QuotaPatch.model_validate({"replicas": None}))
    assert view.limits.replicas == DEFAULTS.replicas
    assert view.custom == {"flavor_share"}
    with pytest.raises(NotFound):
        service.update("0" * 32, QuotaPatch(replicas=1))


def test_usage_counts_live_endpoints_and_running_replicas(db: Database) -> None:
    alice, bob = _user(db, "alice"), _user(db, "bob")
    flavor_id = _flavor(db, 8)
    with db.session() as session:
        endpoints = EndpointRepository(session)
        endpoints.add(_endpoint(alice, flavor_id, 1, target=2))
        endpoints.add(_endpoint(alice, flavor_id, 2, target=3, desired_state=DesiredState.STOPPED))
        endpoints.add(_endpoint(alice, flavor_id, 3, target=4, deleted_at=T0))
        endpoints.add(_endpoint(bob, flavor_id, 4, target=1))
    with db.session() as session:
        quotas = QuotaRepository(session)
        assert quotas.endpoint_count(alice.user_id) == 2
        assert quotas.running_replicas(alice.user_id) == 2
        assert quotas.running_replicas(alice.user_id, flavor_id) == 2
        assert quotas.running_replicas(alice.user_id, "g" * 32) == 0
        assert quotas.replicas_by_flavor(alice.user_id) == {flavor_id: 2}
        assert quotas.endpoint_count(bob.user_id) == 1


def test_gpus_are_counted_as_replicas_times_gpu_num_of_running_endpoints(db: Database) -> None:
    alice = _user(db, "alice")
    flavor_id = _flavor(db, 8)

    def asking(n: int, target: int, gpu_num: int, **changes: object) -> Endpoint:
        made = _endpoint(alice, flavor_id, n, target=target, **changes)
        return dataclasses.replace(made, deploy=dataclasses.replace(made.deploy, gpu_num=gpu_num))

    with db.session() as session:
        endpoints = EndpointRepository(session)
        endpoints.add(asking(11, target=2, gpu_num=2))
        endpoints.add(asking(12, target=1, gpu_num=3))
        endpoints.add(asking(13, target=3, gpu_num=0))
        endpoints.add(asking(14, target=4, gpu_num=4, desired_state=DesiredState.STOPPED))
        endpoints.add(asking(15, target=4, gpu_num=4, deleted_at=T0))
    with db.session() as session:
        quotas = QuotaRepository(session)
        assert quotas.running_gpus(alice.user_id, flavor_id) == 7
        assert quotas.running_gpus(alice.user_id, "g" * 32) == 0
        assert quotas.gpus_by_flavor(alice.user_id) == {flavor_id: 7}
        assert quotas.running_replicas(alice.user_id, flavor_id) == 6


def test_a_refused_write_changes_nothing(db: Database) -> None:
    alice = _user(db, "alice")
    flavor_id = _flavor(db, 4)  # alice's share: 2
    service = QuotaService(db, FakeClock(), DEFAULTS)
    _write(db, service, alice, _endpoint(alice, flavor_id, 1, target=2))

    with pytest.raises(Forbidden, match=r"flavor_share is 0\.5") as refused:
        _write(db, service, alice, _endpoint(alice, flavor_id, 2))
    assert refused.value.code == "quota_exceeded"
    with pytest.raises(Forbidden, match="flavor_share"):
        _write(db, service, alice, _endpoint(alice, flavor_id, 1, target=3))
    with db.session() as session:
        listed, total = EndpointRepository(session).list_for_user(alice.user_id, offset=0, limit=9)
    assert total == 1
    assert listed[0].target_instance_number == 2

    # Scaling down and stopping are always allowed.
    _write(db, service, alice, _endpoint(alice, flavor_id, 1, target=1))
    _write(db, service, alice, _endpoint(alice, flavor_id, 1, desired_state=DesiredState.STOPPED))


def test_the_admin_is_not_bound(db: Database) -> None:
    admin = _user(db, "admin", is_admin=True)
    flavor_id = _flavor(db, 4)
    service = QuotaService(db, FakeClock(), DEFAULTS)
    _write(db, service, admin, _endpoint(admin, flavor_id, 1, target=4))
    _write(db, service, admin, _endpoint(admin, flavor_id, 2, name="n" * 100))
    _write(db, service, admin, _endpoint(admin, flavor_id, 3))
