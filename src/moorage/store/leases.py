"""The controllers' lease in the store, and the fenced database a leader writes through.

Every reading of time here is the database's (``now()`` of PostgreSQL, SQLite's
``julianday('now')``, both as seconds since the Unix epoch), so controllers on
machines whose clocks disagree still agree on when a lease ends. Taking the lease
is a compare-and-set on the epoch it read; the decisions are ``models/leases.py``'s.

Fencing: a leader's ``FencedDatabase`` begins each transaction by reading the
lease's epoch (``FOR SHARE`` on PostgreSQL: a takeover's UPDATE waits for the
transaction, or the transaction's read waits for the takeover), and refuses to go
on with :class:`Deposed` once the epoch is no longer its own. On SQLite, WAL lets
only one writer commit over a snapshot: a transaction that read the old epoch
cannot write after a takeover committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from moorage.models.leases import LeaseRow, LeaseTerms, Lost, Renewed, Take, Wait, claim, renewal
from moorage.store.db import Database
from moorage.store.tables import ControllerLeaseRow

CONTROLLER_LEASE = "controller"


class Deposed(BaseException):
    """The lease's epoch is no longer this leader's: its write is refused.

    A BaseException, as CancelledError is: a loop's "retry on any error" must not
    catch it, so the leader's loops end at the first refused transaction."""


def db_now(session: Session) -> float:
    """The database's clock, in seconds since the Unix epoch."""
    if session.get_bind().dialect.name == "sqlite":
        query = "SELECT (julianday('now') - 2440587.5) * 86400.0"
    else:
        query = "SELECT extract(epoch from clock_timestamp())"
    return float(session.execute(text(query)).scalar_one())


def read(session: Session, name: str = CONTROLLER_LEASE, *, lock: bool = False) -> LeaseRow:
    query = select(ControllerLeaseRow).where(ControllerLeaseRow.name == name)
    if lock:
        query = query.with_for_update()
    row = session.execute(query).scalar_one()
    return LeaseRow(row.holder, row.epoch, row.expires_at)


def try_take(db: Database, me: str, terms: LeaseTerms, name: str = CONTROLLER_LEASE) -> Take | Wait:
    """Takes the lease if it is free; the UPDATE compares the epoch read, so of two
    controllers that read the same free lease only one takes it."""
    with db.session() as session:
        row = read(session, name, lock=True)
        now = db_now(session)
        decision = claim(row, me, now)
        if isinstance(decision, Wait):
            return decision
        taken = session.execute(
            update(ControllerLeaseRow)
            .where(ControllerLeaseRow.name == name, ControllerLeaseRow.epoch == row.epoch)
            .values(holder=me, epoch=decision.epoch, expires_at=now + terms.lease_s)
        )
        if getattr(taken, "rowcount", 0) != 1:
            return Wait(None, terms.renew_s)
        return decision


def renew(
    db: Database, me: str, epoch: int, terms: LeaseTerms, name: str = CONTROLLER_LEASE
) -> Renewed | Lost:
    """Extends the lease of ``epoch`` to the database's now plus the lease, or says it
    is lost."""
    with db.session() as session:
        row = read(session, name, lock=True)
        decision = renewal(row, me, epoch)
        if isinstance(decision, Lost):
            return decision
        session.execute(
            update(ControllerLeaseRow)
            .where(ControllerLeaseRow.name == name, ControllerLeaseRow.epoch == epoch)
            .values(expires_at=db_now(session) + terms.lease_s)
        )
        return decision


def release(db: Database, me: str, epoch: int, name: str = CONTROLLER_LEASE) -> bool:
    """Ends the lease of ``epoch`` now, so a standby takes over at its next look;
    answers whether it was still this controller's."""
    with db.session() as session:
        released = session.execute(
            update(ControllerLeaseRow)
            .where(
                ControllerLeaseRow.name == name,
                ControllerLeaseRow.epoch == epoch,
                ControllerLeaseRow.holder == me,
            )
            .values(expires_at=0.0)
        )
        return getattr(released, "rowcount", 0) == 1


def check_epoch(session: Session, epoch: int, name: str = CONTROLLER_LEASE) -> None:
    """Raises Deposed unless the lease still carries ``epoch``; the row stays share-locked
    (PostgreSQL) until the transaction ends."""
    query = (
        select(ControllerLeaseRow.epoch)
        .where(ControllerLeaseRow.name == name)
        .with_for_update(read=True)
    )
    current = session.execute(query).scalar_one()
    if current != epoch:
        raise Deposed(f"the lease is at epoch {current}, this leader's was {epoch}")


class FencedDatabase(Database):
    """The leader's view of the store: the same engine, every transaction checked
    against the leader's epoch first. ``on_deposed`` is called (from whichever thread
    found out) before Deposed is raised."""

    def __init__(
        self,
        base: Database,
        epoch: int,
        on_deposed: Callable[[], None] = lambda: None,
        name: str = CONTROLLER_LEASE,
    ) -> None:
        # Shares the base's engine and turns; never its own connections.
        self.engine = base.engine
        self._sessions = base._sessions
        self._checked_turns = base._checked_turns
        self.epoch = epoch
        self.name = name
        self.on_deposed = on_deposed

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            try:
                check_epoch(session, self.epoch, self.name)
            except Deposed:
                self.on_deposed()
                raise
            yield session

    def dispose(self) -> None:
        """The base owns the engine: nothing to close here."""
