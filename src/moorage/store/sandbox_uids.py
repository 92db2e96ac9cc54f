"""The host uid each owner of sandboxed replicas runs as, given once and kept.

``owner_uid`` is what the process runtime asks before it starts an owner's replica
(as root): the owner's recorded uid, or the lowest free one of the range, recorded
now. Two starts may ask at once, here or on another moorage sharing the store, for
the same owner or for two owners: the table's unique keys (one row per owner, one
owner per uid) let only one insert win, and the other reads again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from moorage.models.sandbox_uids import UidRange, UidsExhausted, exhausted_message, next_free_uid
from moorage.store.db import Database
from moorage.store.tables import SandboxUidRow

# Each lost race means another start recorded a uid, so a few always suffice; the bound
# only keeps a broken store from looping forever.
MAX_ATTEMPTS = 64


class SandboxUidRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def uid_of(self, user_id: str) -> int | None:
        row = self.session.get(SandboxUidRow, user_id)
        return None if row is None else row.uid

    def taken(self, uids: UidRange) -> list[int]:
        """The uids of the range that owners have."""
        return list(
            self.session.scalars(
                select(SandboxUidRow.uid).where(
                    SandboxUidRow.uid >= uids.base, SandboxUidRow.uid <= uids.last
                )
            )
        )

    def owners(self) -> dict[str, int]:
        """Every owner's uid, by user id."""
        rows = self.session.execute(select(SandboxUidRow.user_id, SandboxUidRow.uid))
        return {user_id: uid for user_id, uid in rows}

    def add(self, user_id: str, uid: int, now: datetime) -> None:
        """Records the owner's uid; raises IntegrityError when the owner or the uid has
        been recorded meanwhile."""
        self.session.add(SandboxUidRow(user_id=user_id, uid=uid, created_at=now))
        self.session.flush()


def owner_uid(db: Database, user_id: str, uids: UidRange, now: Callable[[], datetime]) -> int:
    """The owner's uid, given now from ``uids`` if they have none. An owner keeps the uid
    they were given even when the operator moves the range later: their folders and
    running replicas are that uid's. Raises UidsExhausted when the range is full."""
    for _ in range(MAX_ATTEMPTS):
        try:
            # On SQLite, writes take turns in this process (a reader that writes after
            # another's commit would fail as "locked", not as a conflict).
            with db.checked_session() as session:
                repository = SandboxUidRepository(session)
                known = repository.uid_of(user_id)
                if known is not None:
                    return known
                uid = next_free_uid(uids, repository.taken(uids))
                if uid is None:
                    raise UidsExhausted(exhausted_message(uids))
                repository.add(user_id, uid, now())
                return uid
        except IntegrityError:
            continue  # another start recorded this owner or this uid first: read again
    raise RuntimeError(f"no sandbox uid could be recorded in {MAX_ATTEMPTS} attempts")
