"""The controllers' lease in the store (store/leases.py), on SQLite and PostgreSQL: one
taker of a free lease, renewals, release, and fencing of a deposed leader's writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from moorage.models.leases import LeaseTerms, Lost, Renewed, Take, Wait
from moorage.store import leases
from moorage.store.db import Database
from moorage.store.heartbeats import beat, last_heartbeat
from moorage.store.leases import Deposed, FencedDatabase

TERMS = LeaseTerms(lease_s=3.0, renew_s=1.0)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def _expire(db: Database) -> None:
    with db.session() as session:
        session.execute(text("UPDATE controller_leases SET expires_at = 0"))


def test_the_first_controller_takes_the_lease_and_a_second_waits(db: Database) -> None:
    assert leases.try_take(db, "c1", TERMS) == Take(1)
    waiting = leases.try_take(db, "c2", TERMS)
    assert isinstance(waiting, Wait)
    assert waiting.holder == "c1"
    assert 0 < waiting.expires_in_s <= TERMS.lease_s


def test_an_expired_lease_goes_to_the_next_controller_with_a_new_epoch(db: Database) -> None:
    assert leases.try_take(db, "c1", TERMS) == Take(1)
    _expire(db)
    assert leases.try_take(db, "c2", TERMS) == Take(2)
    lost = leases.renew(db, "c1", 1, TERMS)
    assert isinstance(lost, Lost)
    assert "c2" in lost.reason


def test_renewal_keeps_the_lease_and_release_frees_it_at_once(db: Database) -> None:
    leases.try_take(db, "c1", TERMS)
    assert leases.renew(db, "c1", 1, TERMS) == Renewed()
    assert leases.release(db, "c1", 1)
    assert leases.try_take(db, "c2", TERMS) == Take(2)
    assert not leases.release(db, "c1", 1)  # no longer its own: nothing changes


def test_of_many_controllers_racing_for_a_free_lease_exactly_one_takes_it(
    db: Database,
) -> None:
    results: list[object] = []
    barrier = threading.Barrier(6)

    def race(name: str) -> None:
        barrier.wait()
        try:
            results.append(leases.try_take(db, name, TERMS))
        except Exception as exc:  # SQLite: a concurrent writer is refused, never let in
            results.append(exc)

    threads = [threading.Thread(target=race, args=(f"c{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r for r in results if isinstance(r, Take)] == [Take(1)]


def test_a_deposed_leaders_transactions_are_refused_and_it_is_told(db: Database) -> None:
    leases.try_take(db, "c1", TERMS)
    told: list[bool] = []
    fenced = FencedDatabase(db, 1, lambda: told.append(True))
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    with fenced.session() as session:  # still the leader: its write goes through
        beat(session, "controller", moment)
    _expire(db)
    assert leases.try_take(db, "c2", TERMS) == Take(2)
    with pytest.raises(Deposed), fenced.session() as session:
        beat(session, "controller", moment.replace(year=2027))
    assert told == [True]
    with db.session() as session:
        assert last_heartbeat(session, "controller") == moment


def test_a_takeover_waits_for_the_leaders_open_transaction(db: Database) -> None:
    """PostgreSQL: the leader's transaction holds the lease row FOR SHARE, so the
    takeover's UPDATE comes after its write, never in the middle."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no transaction to interleave")
    leases.try_take(db, "c1", TERMS)
    _expire(db)
    fenced = FencedDatabase(db, 1)
    taken: list[object] = []
    with fenced.session() as session:
        beat(session, "controller", datetime(2026, 1, 1, tzinfo=UTC))
        taker = threading.Thread(target=lambda: taken.append(leases.try_take(db, "c2", TERMS)))
        taker.start()
        taker.join(timeout=0.5)
        assert taker.is_alive()  # blocked behind the leader's open transaction
    taker.join(timeout=10)
    assert taken == [Take(2)]


def test_startup_lock_can_be_taken_again_once_released(db: Database) -> None:
    with db.startup_lock():
        pass
    with db.startup_lock():
        pass
