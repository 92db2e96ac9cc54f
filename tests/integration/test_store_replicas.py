"""Replicas on a real store: an append-only event log and the view derived from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint
from moorage.models.replicas import (
    FailureReason,
    Replica,
    ReplicaEvent,
    ReplicaEventKind,
    ReplicaState,
)
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.replicas import ReplicaRepository, replica_event
from moorage.store.tables import ReplicaEventRow
from moorage.wire import new_id

T0 = datetime(2026, 5, 1, 0, 0, 0, 1, tzinfo=UTC)


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _endpoint(db: Database) -> str:
    with db.session() as session:
        user = AccountRepository(session).create_user(new_id(), is_admin=False, now=T0)
        endpoint = Endpoint(
            service_id=new_id(),
            user_id=user.user_id,
            name="chat",
            description="",
            payment_type="hour",
            flavor_id="f" * 32,
            scale_type="manual",
            target_instance_number=1,
            deploy=DeploySpec(image_url="img", command="serve", port=8080),
            revision=3,
            desired_state=DesiredState.RUNNING,
            service_type="normal",
            created_at=T0,
            updated_at=T0,
        )
        EndpointRepository(session).add(endpoint)
    return endpoint.service_id


def _create(db: Database, endpoint_id: str, *, revision: int = 3, at: int = 0) -> str:
    replica_id = new_id()
    with db.session() as session:
        ReplicaRepository(session).create(replica_id, endpoint_id, revision, _at(at))
    return replica_id


def _record(
    db: Database,
    replica_id: str,
    endpoint_id: str,
    kind: ReplicaEventKind,
    at: int,
    *,
    address: str | None = None,
    reason: FailureReason | None = None,
    detail: str | None = None,
) -> None:
    event = ReplicaEvent(replica_id, endpoint_id, kind, _at(at), address, reason, detail)
    with db.session() as session:
        ReplicaRepository(session).record(event)


def _live(db: Database, endpoint_ids: list[str] | None = None) -> dict[str, Replica]:
    with db.session() as session:
        return {r.replica_id: r for r in ReplicaRepository(session).live(endpoint_ids)}


def _log(db: Database, endpoint_id: str) -> list[ReplicaEvent]:
    """The endpoint's replica events in the order they were recorded (the events API
    lists by time, newest first; these tests check the log's own order)."""
    with db.session() as session:
        rows = session.scalars(
            select(ReplicaEventRow)
            .where(ReplicaEventRow.endpoint_id == endpoint_id)
            .order_by(ReplicaEventRow.event_id)
        )
        return [replica_event(row) for row in rows]


def _kinds(db: Database, endpoint_id: str) -> list[ReplicaEventKind]:
    return [e.kind for e in _log(db, endpoint_id)]


def test_create_writes_a_requested_event(db: Database) -> None:
    endpoint_id = _endpoint(db)

    replica_id = _create(db, endpoint_id, revision=3, at=0)

    events = _log(db, endpoint_id)
    assert events == [ReplicaEvent(replica_id, endpoint_id, ReplicaEventKind.REQUESTED, T0)]
    assert events[0].at.tzinfo == UTC
    replica = _live(db)[replica_id]
    assert replica.state is ReplicaState.REQUESTED
    assert replica.revision == 3
    assert replica.endpoint_id == endpoint_id
    assert replica.requested_at == T0
    assert replica.state_since == T0
    assert replica.address is None
    assert replica.url is None
    assert replica.consecutive_failures == 0
    assert replica.last_failure is None


def test_record_appends_in_recorded_order_whatever_the_clock_says(db: Database) -> None:
    endpoint_id = _endpoint(db)
    replica_id = _create(db, endpoint_id, at=0)
    address = "127.0.0.1:40123"

    # Two events in one instant, then the host clock steps back a minute (NTP):
    # the log's order, not the timestamps, is what happened.
    _record(db, replica_id, endpoint_id, ReplicaEventKind.STARTED, 60, address=address)
    _record(
        db,
        replica_id,
        endpoint_id,
        ReplicaEventKind.FAILED,
        60,
        reason=FailureReason.EXITED,
        detail="exited with code 1",
    )
    _record(db, replica_id, endpoint_id, ReplicaEventKind.STARTED, 1, address=address)
    _record(db, replica_id, endpoint_id, ReplicaEventKind.READY, 2)

    events = _log(db, endpoint_id)
    assert [e.kind for e in events] == [
        ReplicaEventKind.REQUESTED,
        ReplicaEventKind.STARTED,
        ReplicaEventKind.FAILED,
        ReplicaEventKind.STARTED,
        ReplicaEventKind.READY,
    ]
    assert [e.at for e in events] == [_at(0), _at(60), _at(60), _at(1), _at(2)]
    assert events[2].reason is FailureReason.EXITED
    assert events[2].detail == "exited with code 1"
    assert events[1].address == address
    replica = _live(db)[replica_id]
    assert replica.state is ReplicaState.READY
    assert replica.address == address
    assert replica.consecutive_failures == 0


def test_live_derives_state_address_and_failures(db: Database) -> None:
    endpoint_id = _endpoint(db)
    replica_id = _create(db, endpoint_id, at=0)

    _record(db, replica_id, endpoint_id, ReplicaEventKind.STARTED, 1, address="127.0.0.1:5001")
    _record(db, replica_id, endpoint_id, ReplicaEventKind.READY, 2)
    ready = _live(db)[replica_id]
    assert ready.state is ReplicaState.READY
    assert ready.address == "127.0.0.1:5001", "the address comes from the started event"
    assert ready.url == "http://127.0.0.1:5001"
    assert ready.state_since == _at(2)
    assert ready.requested_at == T0

    _record(
        db,
        replica_id,
        endpoint_id,
        ReplicaEventKind.FAILED,
        3,
        reason=FailureReason.EXITED,
        detail="exited with code 137",
    )
    _record(db, replica_id, endpoint_id, ReplicaEventKind.STARTED, 4, address="127.0.0.1:5002")
    _record(
        db,
        replica_id,
        endpoint_id,
        ReplicaEventKind.FAILED,
        5,
        reason=FailureReason.NOT_READY,
        detail="no answer on /health within 300 s",
    )
    failing = _live(db)[replica_id]
    assert failing.state is ReplicaState.FAILED
    assert failing.address is None
    assert failing.consecutive_failures == 2
    assert failing.last_failure == "no answer on /health within 300 s"
    assert failing.last_failure_reason is FailureReason.NOT_READY
    assert failing.state_since == _at(5)

    _record(db, replica_id, endpoint_id, ReplicaEventKind.STARTED, 6, address="127.0.0.1:5003")
    _record(db, replica_id, endpoint_id, ReplicaEventKind.READY, 7)
    recovered = _live(db)[replica_id]
    assert recovered.state is ReplicaState.READY
    assert recovered.address == "127.0.0.1:5003"
    assert recovered.consecutive_failures == 0
    assert recovered.last_failure is None
    assert recovered.last_failure_reason is None


def test_a_stopped_replica_is_no_longer_live_but_its_events_stay(db: Database) -> None:
    endpoint_id = _endpoint(db)
    stopping = _create(db, endpoint_id, at=0)
    staying = _create(db, endpoint_id, at=1)
    _record(db, stopping, endpoint_id, ReplicaEventKind.STARTED, 2, address="127.0.0.1:6001")

    _record(db, stopping, endpoint_id, ReplicaEventKind.STOPPED, 3)

    assert set(_live(db)) == {staying}
    assert set(_live(db, [endpoint_id])) == {staying}
    assert _kinds(db, endpoint_id).count(ReplicaEventKind.STOPPED) == 1
    assert len(_kinds(db, endpoint_id)) == 4


def test_live_filters_by_endpoint_and_orders_by_creation(db: Database) -> None:
    first_endpoint, second_endpoint = _endpoint(db), _endpoint(db)
    older = _create(db, first_endpoint, at=10)
    other = _create(db, second_endpoint, at=5)
    newer = _create(db, first_endpoint, at=20)

    with db.session() as session:
        repo = ReplicaRepository(session)
        assert [r.replica_id for r in repo.live([first_endpoint])] == [older, newer]
        assert [r.replica_id for r in repo.live([second_endpoint])] == [other]
        assert [r.replica_id for r in repo.live()] == [other, older, newer]
        assert list(repo.live([])) == []
        assert list(repo.live([new_id()])) == []
    assert _kinds(db, second_endpoint) == [ReplicaEventKind.REQUESTED]


def test_a_failed_session_block_records_no_replica_and_no_event(db: Database) -> None:
    endpoint_id = _endpoint(db)
    kept = _create(db, endpoint_id)

    def create_and_stop_then_fail() -> None:
        with db.session() as session:
            repo = ReplicaRepository(session)
            repo.create(new_id(), endpoint_id, 3, _at(1))
            repo.record(ReplicaEvent(kept, endpoint_id, ReplicaEventKind.STOPPED, _at(2)))
            raise RuntimeError("start failed")

    with pytest.raises(RuntimeError, match="start failed"):
        create_and_stop_then_fail()

    assert set(_live(db)) == {kept}, "the stop and the new replica must both be undone"
    assert _kinds(db, endpoint_id) == [ReplicaEventKind.REQUESTED]
