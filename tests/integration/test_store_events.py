"""An endpoint's events as the events API pages them: newest first, with revisions."""

from __future__ import annotations

from moorage.models.replicas import FailureReason, ReplicaEventKind
from moorage.store.db import Database
from moorage.store.replicas import ReplicaRepository
from tests.integration.test_store_replicas import _create, _endpoint, _record


def _page(db: Database, endpoint_id: str, offset: int, limit: int) -> tuple[list[str], int]:
    with db.session() as session:
        items, total = ReplicaRepository(session).events_page(
            endpoint_id, offset=offset, limit=limit
        )
    return [f"{i.event.kind}@{i.revision}" for i in items], total


def test_events_page_newest_first_with_each_replicas_revision(db: Database) -> None:
    endpoint_id = _endpoint(db)
    other = _endpoint(db)
    old = _create(db, endpoint_id, revision=1, at=0)
    _record(db, old, endpoint_id, ReplicaEventKind.STARTED, 1, address="127.0.0.1:9000")
    _record(db, old, endpoint_id, ReplicaEventKind.READY, 2)
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
    _create(db, other, at=5)  # another endpoint's: never listed

    assert _page(db, endpoint_id, 0, 100) == (
        ["failed@2", "requested@2", "ready@1", "started@1", "requested@1"],
        5,
    )
    assert _page(db, endpoint_id, 2, 2) == (["ready@1", "started@1"], 5)
    assert _page(db, endpoint_id, 10, 2) == ([], 5)
    with db.session() as session:
        newest = ReplicaRepository(session).events_page(endpoint_id, offset=0, limit=1)[0][0]
    assert newest.event.detail == "no image 'nope'"
    assert newest.message == f"replica {new} (revision 2) failed (start_error): no image 'nope'"
