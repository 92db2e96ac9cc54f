"""An endpoint's history as the events API pages it: its own changes and its replicas'
events merged, newest first, with revisions."""

from __future__ import annotations

from moorage.models.events import EndpointChange, RecordedEvent
from moorage.models.replicas import FailureReason, ReplicaEventKind
from moorage.models.states import EndpointEventKind
from moorage.store.db import Database
from moorage.store.events import EventRepository
from tests.integration.test_store_replicas import _at, _create, _endpoint, _record


def _change(db: Database, endpoint_id: str, kind: EndpointEventKind, at: int, rev: int) -> None:
    with db.session() as session:
        EventRepository(session).record(
            EndpointChange(endpoint_id, kind, _at(at), rev, f"{kind} at {at}")
        )


def _page(db: Database, endpoint_id: str, offset: int, limit: int) -> tuple[list[str], int]:
    with db.session() as session:
        items, total = EventRepository(session).page(endpoint_id, offset=offset, limit=limit)
    return [
        f"{i.event.kind}@{i.revision}" if isinstance(i, RecordedEvent) else f"{i.kind}@{i.revision}"
        for i in items
    ], total


def test_history_merges_changes_and_replica_events_newest_first(db: Database) -> None:
    endpoint_id = _endpoint(db)
    other = _endpoint(db)
    _change(db, endpoint_id, EndpointEventKind.CREATED, 0, 1)
    old = _create(db, endpoint_id, revision=1, at=0)  # same instant: listed as newer
    _record(db, old, endpoint_id, ReplicaEventKind.STARTED, 1, address="127.0.0.1:9000")
    _record(db, old, endpoint_id, ReplicaEventKind.READY, 2)
    _change(db, endpoint_id, EndpointEventKind.ROLLOUT_BEGUN, 3, 2)
    new = _create(db, endpoint_id, revision=2, at=3)
    _record(
        db,
        new,
        endpoint_id,
        ReplicaEventKind.FAILED,
        4,
        reason=FailureReason.START_ERROR,
        detail="no image 'nope'",
    )
    _change(db, other, EndpointEventKind.CREATED, 5, 1)  # another endpoint's: never listed
    _create(db, other, at=5)

    assert _page(db, endpoint_id, 0, 100) == (
        [
            "failed@2",
            "requested@2",
            "rollout_begun@2",
            "ready@1",
            "started@1",
            "requested@1",
            "created@1",
        ],
        7,
    )
    assert _page(db, endpoint_id, 2, 2) == (["rollout_begun@2", "ready@1"], 7)
    assert _page(db, endpoint_id, 10, 2) == ([], 7)
    with db.session() as session:
        newest = EventRepository(session).page(endpoint_id, offset=0, limit=1)[0][0]
    assert isinstance(newest, RecordedEvent)
    assert newest.event.detail == "no image 'nope'"
    assert newest.message == f"replica {new} (revision 2) failed (start_error): no image 'nope'"


def test_a_change_recorded_once_is_kept_once_per_revision(db: Database) -> None:
    endpoint_id = _endpoint(db)
    other = _endpoint(db)

    def once(endpoint: str, at: int, revision: int) -> bool:
        change = EndpointChange(
            endpoint, EndpointEventKind.ROLLOUT_FINISHED, _at(at), revision, "finished"
        )
        with db.session() as session:
            return EventRepository(session).record_once(change)

    assert once(endpoint_id, 1, 2)
    assert not once(endpoint_id, 2, 2), "a rollout's end recorded twice"
    assert once(endpoint_id, 3, 3)
    assert once(other, 4, 2)
    assert _page(db, endpoint_id, 0, 100) == (["rollout_finished@3", "rollout_finished@2"], 2)
