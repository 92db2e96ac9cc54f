"""Users and their API tokens. Tokens are stored as SHA-256 hashes only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from moorage.models.accounts import ApiToken, User
from moorage.store.tables import TokenRow, UserRow
from moorage.tokens import hash_token
from moorage.wire import new_id


def _user(row: UserRow) -> User:
    return User(row.user_id, row.name, row.is_admin, row.created_at)


def _token(row: TokenRow) -> ApiToken:
    return ApiToken(
        row.token_id,
        row.user_id,
        row.name,
        row.prefix,
        row.created_at,
        row.revoked_at,
        bool(row.bootstrap),
    )


class AccountRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create_user(self, name: str, *, is_admin: bool, now: datetime) -> User:
        row = UserRow(user_id=new_id(), name=name, is_admin=is_admin, created_at=now)
        self.session.add(row)
        self.session.flush()
        return _user(row)

    def user_by_name(self, name: str) -> User | None:
        row = self.session.scalars(select(UserRow).where(UserRow.name == name)).first()
        return _user(row) if row else None

    def lock_user(self, user_id: str) -> None:
        """Holds the user's row until the transaction ends (PostgreSQL), so that
        checks of their quotas and the writes they allow take turns."""
        self.session.execute(
            select(UserRow.user_id).where(UserRow.user_id == user_id).with_for_update()
        )

    def user_by_id(self, user_id: str) -> User | None:
        row = self.session.get(UserRow, user_id)
        return _user(row) if row else None

    def list_users(self) -> Sequence[User]:
        return [
            _user(r) for r in self.session.scalars(select(UserRow).order_by(UserRow.created_at))
        ]

    def add_token(
        self, user_id: str, token: str, *, name: str, now: datetime, bootstrap: bool = False
    ) -> ApiToken:
        row = TokenRow(
            token_id=new_id(),
            user_id=user_id,
            name=name,
            token_hash=hash_token(token),
            prefix=token[:8],
            created_at=now,
            revoked_at=None,
            bootstrap=bootstrap,
        )
        self.session.add(row)
        self.session.flush()
        return _token(row)

    def token_by_text(self, token: str) -> ApiToken | None:
        """The record of a token, revoked or not, found by its hash."""
        digest = hash_token(token)
        row = self.session.scalars(select(TokenRow).where(TokenRow.token_hash == digest)).first()
        return _token(row) if row else None

    def bootstrap_tokens(self) -> Sequence[ApiToken]:
        """Live tokens marked as configured by MOORAGE_ADMIN_TOKEN (normally one)."""
        rows = self.session.scalars(
            select(TokenRow).where(TokenRow.bootstrap.is_(True), TokenRow.revoked_at.is_(None))
        )
        return [_token(r) for r in rows]

    def mark_bootstrap(self, token_id: str) -> None:
        row = self.session.get(TokenRow, token_id)
        if row is not None:
            row.bootstrap = True

    def user_for_token(self, token: str) -> User | None:
        digest = hash_token(token)
        row = self.session.scalars(
            select(UserRow)
            .join(TokenRow, TokenRow.user_id == UserRow.user_id)
            .where(TokenRow.token_hash == digest, TokenRow.revoked_at.is_(None))
        ).first()
        return _user(row) if row else None

    def list_tokens(self) -> Sequence[ApiToken]:
        rows = self.session.scalars(select(TokenRow).order_by(TokenRow.created_at))
        return [_token(r) for r in rows]

    def token_by_id(self, token_id: str) -> ApiToken | None:
        row = self.session.get(TokenRow, token_id)
        return _token(row) if row else None

    def revoke_token(self, token_id: str, now: datetime) -> ApiToken | None:
        row = self.session.get(TokenRow, token_id)
        if row is None:
            return None
        if row.revoked_at is None:
            row.revoked_at = now
        return _token(row)

    def active_token_hashes(self) -> dict[str, frozenset[str]]:
        """Each user's live token hashes, for the gateway's route table."""
        by_user: dict[str, set[str]] = {}
        rows = self.session.execute(
            select(TokenRow.user_id, TokenRow.token_hash).where(TokenRow.revoked_at.is_(None))
        )
        for user_id, digest in rows:
            by_user.setdefault(user_id, set()).add(digest)
        return {user_id: frozenset(hashes) for user_id, hashes in by_user.items()}
