"""The route table standalone gateways poll, built from the store: what it routes to,
when a replica leaves it, and how the long-poll answers."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint
from moorage.models.replicas import ReplicaEvent, ReplicaEventKind
from moorage.routing.holder import RouteTableHolder
from moorage.routing.table import build_route_table
from moorage.services.routes import RouteFeed
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.replicas import ReplicaRepository
from moorage.tokens import generate_token, hash_token
from moorage.wire import new_id

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _endpoint(db: Database, token: str, desired_state: DesiredState = DesiredState.RUNNING) -> str:
    with db.session() as session:
        accounts = AccountRepository(session)
        user = accounts.create_user(new_id(), is_admin=False, now=T0)
        accounts.add_token(user.user_id, token, name="t", now=T0)
        endpoint = Endpoint(
            service_id=new_id(),
            user_id=user.user_id,
            name="chat",
            description="",
            payment_type="usd",
            flavor_id="f" * 32,
            scale_type="manual",
            target_instance_number=2,
            deploy=DeploySpec(image_url="img", command="serve", port=8080),
            revision=1,
            desired_state=desired_state,
            service_type="normal",
            created_at=T0,
            updated_at=T0,
        )
        EndpointRepository(session).add(endpoint)
    return endpoint.service_id


def _replica(db: Database, endpoint_id: str, *kinds: ReplicaEventKind) -> str:
    replica_id = new_id()
    with db.session() as session:
        replicas = ReplicaRepository(session)
        replicas.create(replica_id, endpoint_id, 1, T0)
        for kind in kinds:
            address = "127.0.0.1:9" if kind is ReplicaEventKind.STARTED else None
            replicas.record(ReplicaEvent(replica_id, endpoint_id, kind, T0, address))
    return replica_id


def _record(db: Database, replica_id: str, endpoint_id: str, kind: ReplicaEventKind) -> None:
    with db.session() as session:
        ReplicaRepository(session).record(ReplicaEvent(replica_id, endpoint_id, kind, T0))


def _routed(body: dict[str, object], service_id: str) -> set[str]:
    endpoints = body["endpoints"]
    assert isinstance(endpoints, list)
    (entry,) = [e for e in endpoints if e["service_id"] == service_id]
    return {r["replica_id"] for r in entry["replicas"]}


READY = (ReplicaEventKind.STARTED, ReplicaEventKind.READY)


async def test_the_table_routes_to_ready_replicas_with_their_owners_tokens(db: Database) -> None:
    token = generate_token()
    service_id = _endpoint(db, token)
    ready = _replica(db, service_id, *READY)
    _replica(db, service_id, ReplicaEventKind.STARTED)  # started, not yet ready

    body = await RouteFeed(db, max_age_s=1).current()

    assert _routed(body, service_id) == {ready}
    (entry,) = body["endpoints"]
    assert entry["token_sha256"] == [hash_token(token)]


async def test_a_replica_recorded_unready_leaves_the_table_without_a_controller(
    db: Database,
) -> None:
    """A drained replica is recorded unready before it is stopped: the table built
    from the store stops routing to it from that record on."""
    service_id = _endpoint(db, generate_token())
    staying = _replica(db, service_id, *READY)
    leaving = _replica(db, service_id, *READY)
    feed = RouteFeed(db, max_age_s=0.2)
    first = await feed.current()
    assert _routed(first, service_id) == {staying, leaving}

    _record(db, leaving, service_id, ReplicaEventKind.UNREADY)
    changed = await asyncio.wait_for(feed.changed_from(first["version"], wait_s=10), 5)

    assert _routed(changed, service_id) == {staying}


async def test_a_replica_the_local_controller_took_out_is_not_served(db: Database) -> None:
    """Before the store records it, the controller's own table already lacks a replica
    it is about to stop; the long-poll answers at that swap."""
    service_id = _endpoint(db, generate_token())
    staying = _replica(db, service_id, *READY)
    leaving = _replica(db, service_id, *READY)
    local = RouteTableHolder()
    feed = RouteFeed(db, max_age_s=60, local=local)
    # The controller's table as its pass loads it (tokens aside, the same replicas).
    with db.session() as session:
        endpoints = EndpointRepository(session).list_all_live()
        replicas = ReplicaRepository(session).live()
    loaded = build_route_table(endpoints, replicas, {})
    local.swap(loaded)
    first = await feed.current()
    assert _routed(first, service_id) == {staying, leaving}

    waiting = asyncio.create_task(feed.changed_from(first["version"], wait_s=30))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    local.swap(loaded.without(frozenset({leaving})))
    changed = await asyncio.wait_for(waiting, 5)

    assert _routed(changed, service_id) == {staying}


async def test_an_unchanged_table_is_answered_after_the_wait(db: Database) -> None:
    _endpoint(db, generate_token())
    feed = RouteFeed(db, max_age_s=0.1)
    first = await feed.current()
    loop = asyncio.get_running_loop()
    started = loop.time()

    again = await feed.changed_from(first["version"], wait_s=0.5)

    assert again["version"] == first["version"]
    assert 0.45 <= loop.time() - started < 3


async def test_a_stale_version_is_answered_at_once(db: Database) -> None:
    _endpoint(db, generate_token())
    feed = RouteFeed(db, max_age_s=60)
    loop = asyncio.get_running_loop()
    started = loop.time()

    body = await feed.changed_from("not-this-one", wait_s=30)

    assert body["version"] != "not-this-one"
    assert loop.time() - started < 3


async def test_an_endpoint_stopped_by_a_write_is_listed_as_stopped(db: Database) -> None:
    """Stopped endpoints are reloaded only after a write; that write is never missed,
    or a stopped endpoint would answer 404 instead of "stopped"."""
    service_id = _endpoint(db, generate_token())
    already_stopped = _endpoint(db, generate_token(), DesiredState.STOPPED)
    feed = RouteFeed(db, max_age_s=0)
    first = await feed.current()
    statuses = {e["service_id"]: e["status"] for e in first["endpoints"]}
    assert statuses == {service_id: "running", already_stopped: "stopped"}

    with db.session() as session:
        repository = EndpointRepository(session)
        running = repository.get_live(service_id)
        assert running is not None
        repository.save(
            dataclasses.replace(
                running,
                desired_state=DesiredState.STOPPED,
                updated_at=running.updated_at + timedelta(seconds=1),
            )
        )
    second = await feed.current()

    statuses = {e["service_id"]: e["status"] for e in second["endpoints"]}
    assert statuses == {service_id: "stopped", already_stopped: "stopped"}
