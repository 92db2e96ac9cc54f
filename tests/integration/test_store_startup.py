"""What the controller saw of a starting replica, kept in the store for status_info:
read back as written, and forgotten when the replica starts again; and a stopped
replica's history, which a late second stop does not lengthen."""

from __future__ import annotations

from moorage.models.replicas import ReplicaEvent, ReplicaEventKind, ReplicaState, StartupWatch
from moorage.store.db import Database
from moorage.store.replicas import ReplicaRepository
from tests.integration.test_store_replicas import _at, _create, _endpoint, _live, _log, _record


def test_a_starting_replicas_watch_is_read_back_and_cleared_by_its_next_start(
    db: Database,
) -> None:
    endpoint_id = _endpoint(db)
    replica_id = _create(db, endpoint_id)
    _record(db, replica_id, endpoint_id, ReplicaEventKind.STARTED, 1, address="127.0.0.1:1")
    watch = StartupWatch("GET /: answered 503", _at(5), 41234, (8080, 9090))
    with db.session() as session:
        ReplicaRepository(session).set_startup(replica_id, watch)

    assert _live(db)[replica_id].startup == watch

    _record(db, replica_id, endpoint_id, ReplicaEventKind.FAILED, 9)
    _record(db, replica_id, endpoint_id, ReplicaEventKind.STARTED, 20, address="127.0.0.1:2")
    again = _live(db)[replica_id]
    assert again.state is ReplicaState.STARTING
    assert again.startup == StartupWatch()


def test_no_ports_is_told_apart_from_unknown_ports(db: Database) -> None:
    endpoint_id = _endpoint(db)
    replica_id = _create(db, endpoint_id)
    _record(db, replica_id, endpoint_id, ReplicaEventKind.STARTED, 1, address="127.0.0.1:1")
    with db.session() as session:
        ReplicaRepository(session).set_startup(replica_id, StartupWatch(given_port=5, listening=()))

    assert _live(db)[replica_id].startup.listening == ()


def test_ports_only_the_container_reaches_are_read_back(db: Database) -> None:
    endpoint_id = _endpoint(db)
    replica_id = _create(db, endpoint_id)
    _record(db, replica_id, endpoint_id, ReplicaEventKind.STARTED, 1, address="127.0.0.1:1")
    watch = StartupWatch(
        given_port=8000, listening=(8000, 9090), inside_only=("127.0.0.1:8000", "[::1]:9090")
    )
    with db.session() as session:
        ReplicaRepository(session).set_startup(replica_id, watch)

    read = _live(db)[replica_id].startup
    assert read == watch
    assert read.unreachable == "127.0.0.1:8000"


def test_a_replica_already_stopped_records_no_second_stop(db: Database) -> None:
    """A stop planned from a read made just before the first stop was recorded: the
    replica stopped once, so one event (and one log line) says so."""
    endpoint_id = _endpoint(db)
    replica_id = _create(db, endpoint_id)
    _record(db, replica_id, endpoint_id, ReplicaEventKind.STARTED, 1, address="127.0.0.1:1")
    _record(db, replica_id, endpoint_id, ReplicaEventKind.STOPPED, 5, detail="deleted")
    again = ReplicaEvent(replica_id, endpoint_id, ReplicaEventKind.STOPPED, _at(6), detail="x")

    with db.session() as session:
        revision = ReplicaRepository(session).record(again)

    assert revision is None
    assert [e.kind for e in _log(db, endpoint_id)] == [
        ReplicaEventKind.REQUESTED,
        ReplicaEventKind.STARTED,
        ReplicaEventKind.STOPPED,
    ]
