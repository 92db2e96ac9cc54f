"""Users and tokens: who may call moorage, and as whom."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from moorage.clock import Clock
from moorage.errors import Conflict, Forbidden, InvalidField, NotFound, Unauthenticated
from moorage.settings import Settings
from moorage.store.accounts import AccountRepository, ApiToken, User, generate_token
from moorage.store.db import Database

ADMIN_USER = "admin"
MAX_NAME_LENGTH = 128


@dataclass(frozen=True)
class IssuedToken:
    """A new token: the only moment its plain text exists outside the caller."""

    token: str
    record: ApiToken
    user: User


def _check_name(field: str, name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidField(field, f"must be 1 to {MAX_NAME_LENGTH} characters, got {name!r}")
    return name


class AccountService:
    def __init__(
        self, db: Database, clock: Clock, on_change: Callable[[], None] = lambda: None
    ) -> None:
        self.db = db
        self.clock = clock
        self.on_change = on_change

    def ensure_admin(self, settings: Settings) -> str | None:
        """Makes sure an admin token works; returns it only when it was just generated,
        so the caller prints it exactly once."""
        configured = settings.admin_token.get_secret_value() if settings.admin_token else None
        generated: str | None = None
        token_file = settings.admin_token_file
        if configured is None and token_file.exists():
            configured = token_file.read_text().strip() or None
        if configured is None:
            configured = generated = generate_token()
            token_file.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(configured + "\n")
        with self.db.session() as session:
            accounts = AccountRepository(session)
            admin = accounts.user_by_name(ADMIN_USER)
            if admin is None:
                admin = accounts.create_user(ADMIN_USER, is_admin=True, now=self.clock.now())
            if not accounts.has_token(configured):
                accounts.add_token(admin.user_id, configured, name="admin", now=self.clock.now())
        return generated

    def authenticate(self, token: str | None) -> User:
        if not token:
            raise Unauthenticated("send your moorage token as 'Authorization: Bearer <token>'")
        with self.db.session() as session:
            user = AccountRepository(session).user_for_token(token)
        if user is None:
            raise Unauthenticated("this token is unknown or revoked; ask your admin for a new one")
        return user

    @staticmethod
    def require_admin(user: User) -> None:
        if not user.is_admin:
            raise Forbidden("managing users and tokens needs the admin token")

    def create_user(self, name: str) -> User:
        name = _check_name("name", name)
        with self.db.session() as session:
            accounts = AccountRepository(session)
            if accounts.user_by_name(name) is not None:
                raise Conflict(f"name: a user named {name!r} exists already", code="name_in_use")
            return accounts.create_user(name, is_admin=False, now=self.clock.now())

    def list_users(self) -> Sequence[User]:
        with self.db.session() as session:
            return AccountRepository(session).list_users()

    def create_token(
        self,
        *,
        user_id: str | None = None,
        user_name: str | None = None,
        name: str = "",
        create_user: bool = False,
    ) -> IssuedToken:
        """Issues a token for a user named by id or name; ``create_user`` makes a
        missing named user first (what ``moorage tokens create --user`` wants)."""
        if (user_id is None) == (user_name is None):
            raise InvalidField("user_id", "give exactly one of user_id or user_name")
        token = generate_token()
        with self.db.session() as session:
            accounts = AccountRepository(session)
            user = (
                accounts.user_by_id(user_id) if user_id else accounts.user_by_name(user_name or "")
            )
            if user is None and create_user and user_name:
                user = accounts.create_user(
                    _check_name("user_name", user_name), is_admin=False, now=self.clock.now()
                )
            if user is None:
                field = "user_id" if user_id else "user_name"
                raise NotFound(f"{field}: no such user; POST /v1/users creates one")
            record = accounts.add_token(
                user.user_id, token, name=name or "token", now=self.clock.now()
            )
        self.on_change()
        return IssuedToken(token, record, user)

    def list_tokens(self) -> Sequence[ApiToken]:
        with self.db.session() as session:
            return AccountRepository(session).list_tokens()

    def revoke_token(self, token_id: str) -> ApiToken:
        with self.db.session() as session:
            record = AccountRepository(session).revoke_token(token_id, self.clock.now())
        if record is None:
            raise NotFound(f"no token {token_id!r}; GET /v1/tokens lists them")
        self.on_change()
        return record
