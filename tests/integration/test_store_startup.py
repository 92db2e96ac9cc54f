"""What the controller saw of a starting replica, kept in the store for status_info:
read back as written, and forgotten when the replica starts again."""

from __future__ import annotations

from moorage.models.replicas import ReplicaEventKind, ReplicaState, StartupWatch
from moorage.store.db import Database
from moorage.store.replicas import ReplicaRepository
from tests.integration.test_store_replicas import _at, _create, _endpoint, _live, _record


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
