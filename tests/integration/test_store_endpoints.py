"""Endpoints on a real store: round trips, live-name uniqueness, capacity, paging."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from moorage.errors import Conflict
from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.wire import new_id

T0 = datetime(2026, 4, 1, 9, 30, 0, 654_321, tzinfo=UTC)
FLAVOR = "f" * 32
OTHER_FLAVOR = "e" * 32


def _user(db: Database, name: str) -> str:
    with db.session() as session:
        return AccountRepository(session).create_user(name, is_admin=False, now=T0).user_id


def _endpoint(
    user_id: str,
    name: str,
    *,
    created_at: datetime = T0,
    flavor_id: str = FLAVOR,
    target: int = 1,
    state: DesiredState = DesiredState.RUNNING,
) -> Endpoint:
    return Endpoint(
        service_id=new_id(),
        user_id=user_id,
        name=name,
        description=f"{name} endpoint",
        payment_type="hour",
        flavor_id=flavor_id,
        scale_type="manual",
        target_instance_number=target,
        deploy=DeploySpec(
            image_url="ghcr.io/example/server:1.2",
            command="python -m server --port $PORT",
            port=8080,
            gpu_num=0,
            env={"MODEL": "tiny", "QUOTED": "a b \"c\" 'd' ü"},
        ),
        revision=1,
        desired_state=state,
        service_type="normal",
        created_at=created_at,
        updated_at=created_at,
    )


def _add(db: Database, endpoint: Endpoint) -> Endpoint:
    with db.session() as session:
        return EndpointRepository(session).add(endpoint)


def _get_live(db: Database, service_id: str) -> Endpoint | None:
    with db.session() as session:
        return EndpointRepository(session).get_live(service_id)


def _names(db: Database, user_id: str) -> list[str]:
    with db.session() as session:
        endpoints, _ = EndpointRepository(session).list_for_user(user_id, offset=0, limit=100)
    return sorted(e.name for e in endpoints)


def test_add_then_get_live_round_trips_every_field(db: Database) -> None:
    user = _user(db, "alice")
    plus_nine = timezone(timedelta(hours=9))
    created = datetime(2026, 4, 1, 18, 30, 0, 654_321, tzinfo=plus_nine)
    endpoint = _endpoint(user, "chat", created_at=created, target=3)

    _add(db, endpoint)
    loaded = _get_live(db, endpoint.service_id)

    assert loaded == endpoint
    assert loaded is not None
    assert loaded.deploy.env == {"MODEL": "tiny", "QUOTED": "a b \"c\" 'd' ü"}
    assert loaded.deploy.gpu_num == 0
    assert loaded.desired_state is DesiredState.RUNNING
    for moment in (loaded.created_at, loaded.updated_at):
        assert moment.tzinfo == UTC
        assert moment == T0  # 18:30 at +09:00 is 09:30 UTC
        assert moment.microsecond == 654_321
    assert loaded.deleted_at is None


def test_save_round_trips_every_changed_field(db: Database) -> None:
    user = _user(db, "alice")
    endpoint = _add(db, _endpoint(user, "chat"))
    later = T0 + timedelta(hours=2, microseconds=7)
    changed = dataclasses.replace(
        endpoint,
        name="chat-v2",
        description="now bigger",
        payment_type="month",
        flavor_id=OTHER_FLAVOR,
        scale_type="auto",
        target_instance_number=5,
        deploy=DeploySpec(
            image_url="ghcr.io/example/server:2.0",
            command="serve --port $PORT --workers 4",
            port=9000,
            gpu_num=2,
            env={"MODEL": "large", "NEW": "1"},
        ),
        revision=2,
        desired_state=DesiredState.STOPPED,
        updated_at=later,
    )

    with db.session() as session:
        EndpointRepository(session).save(changed)

    loaded = _get_live(db, endpoint.service_id)
    assert loaded == changed
    assert loaded is not None
    assert loaded.created_at == T0, "saving must not move created_at"
    assert loaded.updated_at == later
    assert loaded.deploy.env == {"MODEL": "large", "NEW": "1"}


def test_deleted_and_unknown_endpoints_are_not_live(db: Database) -> None:
    user = _user(db, "alice")
    endpoint = _add(db, _endpoint(user, "chat"))
    deleted_at = T0 + timedelta(minutes=1)

    with db.session() as session:
        EndpointRepository(session).save(
            dataclasses.replace(endpoint, deleted_at=deleted_at, updated_at=deleted_at)
        )

    assert _get_live(db, endpoint.service_id) is None
    assert _get_live(db, new_id()) is None
    with db.session() as session:
        kept = EndpointRepository(session).get_many([endpoint.service_id])
    assert [e.deleted_at for e in kept] == [deleted_at], "a deleted endpoint is kept, marked"


def test_same_user_cannot_have_two_live_endpoints_with_one_name(db: Database) -> None:
    user = _user(db, "alice")
    first = _add(db, _endpoint(user, "chat"))

    with pytest.raises(Conflict) as caught, db.session() as session:
        EndpointRepository(session).add(_endpoint(user, "chat"))

    assert caught.value.code == "name_in_use"
    assert caught.value.status_code == 409
    assert "chat" in caught.value.message
    with db.session() as session:
        repo = EndpointRepository(session)
        endpoints, total = repo.list_for_user(user, offset=0, limit=10)
        assert [e.service_id for e in endpoints] == [first.service_id]
        assert total == 1
        assert repo.name_in_use(user, "chat") is True
        assert repo.name_in_use(user, "chat", except_id=first.service_id) is False


def test_renaming_onto_a_live_name_is_a_conflict(db: Database) -> None:
    user = _user(db, "alice")
    _add(db, _endpoint(user, "chat"))
    other = _add(db, _endpoint(user, "embed"))

    with pytest.raises(Conflict) as caught, db.session() as session:
        EndpointRepository(session).save(dataclasses.replace(other, name="chat"))

    assert caught.value.code == "name_in_use"
    assert _names(db, user) == ["chat", "embed"]
    loaded = _get_live(db, other.service_id)
    assert loaded is not None
    assert loaded.name == "embed"


def test_a_deleted_endpoints_name_can_be_reused(db: Database) -> None:
    user = _user(db, "alice")
    old = _add(db, _endpoint(user, "chat"))
    gone = T0 + timedelta(minutes=1)
    with db.session() as session:
        EndpointRepository(session).save(dataclasses.replace(old, deleted_at=gone))

    new = _add(db, _endpoint(user, "chat", created_at=T0 + timedelta(minutes=2)))

    assert _names(db, user) == ["chat"]
    loaded = _get_live(db, new.service_id)
    assert loaded is not None
    assert loaded.name == "chat"
    # Deleting the new one too leaves two deleted endpoints of one name: still allowed.
    with db.session() as session:
        EndpointRepository(session).save(dataclasses.replace(new, deleted_at=gone))
    assert _names(db, user) == []


def test_two_users_can_share_a_name(db: Database) -> None:
    alice, bob = _user(db, "alice"), _user(db, "bob")

    _add(db, _endpoint(alice, "chat"))
    _add(db, _endpoint(bob, "chat"))

    assert _names(db, alice) == ["chat"]
    assert _names(db, bob) == ["chat"]


def test_a_conflict_rolls_back_the_whole_session_block(db: Database) -> None:
    user = _user(db, "alice")
    _add(db, _endpoint(user, "chat"))

    written: list[str] = []

    def three_good_writes_then_a_clash() -> None:
        with db.session() as session:
            accounts, endpoints = AccountRepository(session), EndpointRepository(session)
            bob = accounts.create_user("bob", is_admin=False, now=T0)
            endpoints.add(_endpoint(bob.user_id, "bobs"))
            endpoints.add(_endpoint(user, "fresh"))
            written.append("three good writes")
            endpoints.add(_endpoint(user, "chat"))

    with pytest.raises(Conflict):
        three_good_writes_then_a_clash()

    assert written == ["three good writes"]

    assert _names(db, user) == ["chat"]
    with db.session() as session:
        assert AccountRepository(session).user_by_name("bob") is None
        assert len(EndpointRepository(session).list_all_live()) == 1


def test_a_conflict_as_the_blocks_first_write_leaves_nothing(db: Database) -> None:
    user = _user(db, "alice")
    _add(db, _endpoint(user, "chat"))

    def clash_first() -> None:
        with db.session() as session:
            endpoints = EndpointRepository(session)
            endpoints.add(_endpoint(user, "chat"))
            endpoints.add(_endpoint(user, "never"))

    with pytest.raises(Conflict):
        clash_first()

    assert _names(db, user) == ["chat"]


def test_held_instances_counts_running_undeleted_endpoints_of_the_flavor(db: Database) -> None:
    alice, bob = _user(db, "alice"), _user(db, "bob")
    counted_a = _add(db, _endpoint(alice, "a", target=2))
    counted_b = _add(db, _endpoint(bob, "b", target=3))
    _add(db, _endpoint(alice, "stopped", target=5, state=DesiredState.STOPPED))
    _add(db, _endpoint(alice, "elsewhere", target=11, flavor_id=OTHER_FLAVOR))
    deleted = _add(db, _endpoint(alice, "deleted", target=7))
    with db.session() as session:
        EndpointRepository(session).save(dataclasses.replace(deleted, deleted_at=T0))

    with db.session() as session:
        repo = EndpointRepository(session)
        assert repo.held_instances(FLAVOR) == 5
        assert repo.held_instances(FLAVOR, except_id=counted_a.service_id) == 3
        assert repo.held_instances(FLAVOR, except_id=counted_b.service_id) == 2
        assert repo.held_instances(OTHER_FLAVOR) == 11
        assert repo.held_instances("d" * 32) == 0


def test_list_for_user_pages_newest_first_with_total(db: Database) -> None:
    alice, bob = _user(db, "alice"), _user(db, "bob")
    made = [
        _add(db, _endpoint(alice, f"ep{i}", created_at=T0 + timedelta(minutes=i))) for i in range(5)
    ]
    deleted = _add(db, _endpoint(alice, "deleted", created_at=T0 + timedelta(hours=1)))
    with db.session() as session:
        EndpointRepository(session).save(dataclasses.replace(deleted, deleted_at=T0))
    _add(db, _endpoint(bob, "bobs", created_at=T0 + timedelta(hours=2)))

    pages: list[list[str]] = []
    with db.session() as session:
        repo = EndpointRepository(session)
        for offset in (0, 2, 4, 6):
            endpoints, total = repo.list_for_user(alice, offset=offset, limit=2)
            assert total == 5
            pages.append([e.name for e in endpoints])

    assert pages == [["ep4", "ep3"], ["ep2", "ep1"], ["ep0"], []]
    with db.session() as session:
        first, _ = EndpointRepository(session).list_for_user(alice, offset=0, limit=1)
    assert first == [made[4]]


def test_list_for_user_orders_same_moment_endpoints_stably(db: Database) -> None:
    user = _user(db, "alice")
    made = [_add(db, _endpoint(user, f"ep{i}")) for i in range(4)]

    seen: list[str] = []
    with db.session() as session:
        repo = EndpointRepository(session)
        for offset in range(4):
            endpoints, _ = repo.list_for_user(user, offset=offset, limit=1)
            seen.extend(e.service_id for e in endpoints)

    assert seen == sorted(e.service_id for e in made), "paging must neither repeat nor skip"


def test_the_controller_loads_only_endpoints_that_want_replicas(db: Database) -> None:
    """Stopped, scaled-to-0 and deleted endpoints are not planned every pass; the live
    idle ones give only what their route entry needs."""
    user = _user(db, "alice")
    running = _add(db, _endpoint(user, "running"))
    stopped = _add(db, _endpoint(user, "stopped", state=DesiredState.STOPPED))
    scaled_to_zero = _add(db, _endpoint(user, "zero", target=0))
    deleted = _add(db, _endpoint(user, "deleted", state=DesiredState.STOPPED))
    with db.session() as session:
        repository = EndpointRepository(session)
        repository.save(dataclasses.replace(deleted, deleted_at=T0))

    with db.session() as session:
        repository = EndpointRepository(session)
        wanting = [e.service_id for e in repository.list_wanting_replicas()]
        idle = {i.service_id: i for i in repository.list_idle()}

    assert wanting == [running.service_id]
    assert set(idle) == {stopped.service_id, scaled_to_zero.service_id}
    assert idle[stopped.service_id].desired_state is DesiredState.STOPPED
    assert idle[stopped.service_id].user_id == user
    assert idle[scaled_to_zero.service_id].desired_state is DesiredState.RUNNING
    assert idle[stopped.service_id].gateway == stopped.gateway
