"""Users' secrets and registry credentials as the store keeps them: encrypted bytes.

The repository never sees a value in clear; the service encrypts before it
writes and the controller decrypts what a replica is about to get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from moorage.store.tables import UserSecretRow


@dataclass(frozen=True)
class StoredSecret:
    name: str
    ciphertext: bytes
    created_at: datetime
    updated_at: datetime


class SecretRepository:
    """One kind of a user's secrets: ``env`` (variables) or ``registry`` (credentials)."""

    def __init__(self, session: Session, kind: str) -> None:
        self.session = session
        self.kind = kind

    def _row(self, user_id: str, name: str) -> UserSecretRow | None:
        return self.session.scalars(
            select(UserSecretRow).where(
                UserSecretRow.user_id == user_id,
                UserSecretRow.kind == self.kind,
                UserSecretRow.name == name,
            )
        ).one_or_none()

    def count(self, user_id: str) -> int:
        return (
            self.session.scalar(
                select(func.count())
                .select_from(UserSecretRow)
                .where(UserSecretRow.user_id == user_id, UserSecretRow.kind == self.kind)
            )
            or 0
        )

    def put(self, user_id: str, name: str, ciphertext: bytes, now: datetime) -> bool:
        """Creates or replaces; True when it created."""
        row = self._row(user_id, name)
        created = row is None
        if row is None:
            row = UserSecretRow(
                user_id=user_id, kind=self.kind, name=name, created_at=now, ciphertext=b""
            )
            self.session.add(row)
        row.ciphertext = ciphertext
        row.updated_at = now
        self.session.flush()
        return created

    def delete(self, user_id: str, name: str) -> bool:
        result = self.session.execute(
            delete(UserSecretRow).where(
                UserSecretRow.user_id == user_id,
                UserSecretRow.kind == self.kind,
                UserSecretRow.name == name,
            )
        )
        return bool(getattr(result, "rowcount", 0))

    def list(self, user_id: str, names: Sequence[str] | None = None) -> list[StoredSecret]:
        """The user's secrets of this kind, by name; only ``names`` when given."""
        query = select(UserSecretRow).where(
            UserSecretRow.user_id == user_id, UserSecretRow.kind == self.kind
        )
        if names is not None:
            query = query.where(UserSecretRow.name.in_(list(names)))
        rows = self.session.scalars(query.order_by(UserSecretRow.name))
        return [StoredSecret(r.name, r.ciphertext, r.created_at, r.updated_at) for r in rows]
