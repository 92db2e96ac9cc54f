"""Owners' sandbox uids on a real store: given once, kept, never shared, even when many
starts ask at once, and refused with what to do when the range is full."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from moorage.models.sandbox_uids import UidRange, UidsExhausted
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.sandbox_uids import SandboxUidRepository, owner_uid

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RANGE = UidRange(2_000_000_000, 65536)


def _now() -> datetime:
    return T0


def _users(db: Database, count: int) -> list[str]:
    with db.session() as session:
        accounts = AccountRepository(session)
        return [accounts.create_user(f"u{n}", is_admin=False, now=T0).user_id for n in range(count)]


def test_each_owner_gets_a_uid_of_their_own_and_keeps_it(db: Database) -> None:
    alice, bob = _users(db, 2)
    first = owner_uid(db, alice, RANGE, _now)
    assert first == RANGE.base
    assert owner_uid(db, bob, RANGE, _now) == RANGE.base + 1
    assert owner_uid(db, alice, RANGE, _now) == first, "asked again, the same uid"
    with db.session() as session:
        assert SandboxUidRepository(session).owners() == {alice: first, bob: RANGE.base + 1}


def test_an_owner_keeps_their_uid_when_the_range_moves(db: Database) -> None:
    alice, bob = _users(db, 2)
    kept = owner_uid(db, alice, RANGE, _now)
    moved = UidRange(3_000_000_000, 10)
    assert owner_uid(db, alice, moved, _now) == kept
    assert owner_uid(db, bob, moved, _now) == moved.base


def test_the_store_refuses_a_second_row_for_an_owner_or_a_uid(db: Database) -> None:
    alice, bob = _users(db, 2)
    owner_uid(db, alice, RANGE, _now)
    for user_id, uid in ((bob, RANGE.base), (alice, RANGE.base + 5)):
        with pytest.raises(IntegrityError), db.session() as session:
            SandboxUidRepository(session).add(user_id, uid, T0)


def test_a_full_range_is_refused_with_what_the_operator_can_do(db: Database) -> None:
    alice, bob, carol = _users(db, 3)
    small = UidRange(2_000_000_000, 2)
    owner_uid(db, alice, small, _now)
    owner_uid(db, bob, small, _now)
    with pytest.raises(UidsExhausted, match="MOORAGE_SANDBOX_UID_COUNT"):
        owner_uid(db, carol, small, _now)
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM sandbox_uids")).scalar() == 2


def test_concurrent_starts_give_each_owner_one_uid_and_no_uid_two_owners(db: Database) -> None:
    """On PostgreSQL half the starts go through a second engine, as a second moorage on
    the same store would: only the table's unique keys keep them apart."""
    owners = _users(db, 6)
    shared = db.engine.dialect.name == "postgresql"
    other = Database(db.engine.url.render_as_string(hide_password=False)) if shared else db
    got: list[tuple[str, int]] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(18)

    def start(user_id: str, store: Database) -> None:
        try:
            barrier.wait(timeout=30)
            got.append((user_id, owner_uid(store, user_id, RANGE, _now)))
        except BaseException as exc:  # reported below, with the rest
            failures.append(exc)

    threads = [
        threading.Thread(target=start, args=(user_id, (db, other)[n % 2]))
        for n, user_id in enumerate(owners * 3)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        if other is not db:
            other.dispose()
    assert not failures, failures
    assert len(got) == 18
    by_owner: dict[str, set[int]] = {}
    for user_id, uid in got:
        by_owner.setdefault(user_id, set()).add(uid)
    assert all(len(uids) == 1 for uids in by_owner.values()), by_owner
    given = [uids.pop() for uids in by_owner.values()]
    assert len(set(given)) == len(owners), "two owners share a uid"
    assert set(given) == set(range(RANGE.base, RANGE.base + len(owners)))
