"""Users and tokens: who may call moorage, and as whom."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cachetools import TTLCache

from moorage import refusals
from moorage.clock import Clock
from moorage.errors import (
    Conflict,
    ErrorCode,
    Forbidden,
    InvalidField,
    MoorageError,
    NotFound,
)
from moorage.models.accounts import ApiToken, User
from moorage.settings import Settings
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.tokens import generate_token, hash_token

log = logging.getLogger(__name__)

ADMIN_USER = "admin"
MAX_NAME_LENGTH = 128
# Tokens that authenticated in the last few seconds, by hash, so that a request with
# a token seen recently costs no store read (nor a worker thread: see api.deps). A
# revocation through this service forgets them all at once; one made by another
# process sharing the store takes effect within TOKEN_CACHE_S. Unknown tokens are
# never kept: a caller guessing tokens cannot fill the cache.
TOKEN_CACHE_S = 5.0
TOKEN_CACHE_SIZE = 10_000


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
        self._recent: TTLCache[str, User] = TTLCache(
            TOKEN_CACHE_SIZE, TOKEN_CACHE_S, timer=lambda: clock.now().timestamp()
        )
        self._recent_lock = threading.Lock()  # authenticate runs in worker threads

    def ensure_admin(self, settings: Settings) -> str | None:
        """Makes the configured token the admin's one bootstrap token; returns it only
        when it was just generated, so the caller prints it exactly once.

        The configuration is the truth: a bootstrap token that is no longer configured
        is revoked (one log line says so). A configured token that was revoked, or that
        belongs to another user, stops the start: a revoked token may have leaked, so
        moorage never brings it back by itself; the operator sets a new one.
        """
        configured = settings.admin_token.get_secret_value() if settings.admin_token else None
        generated: str | None = None
        token_file = settings.admin_token_file
        source = "MOORAGE_ADMIN_TOKEN"
        if configured is None and token_file.exists():
            configured = token_file.read_text().strip() or None
            source = f"the admin token file {token_file}"
        if configured is None:
            configured = generated = generate_token()
            token_file.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(configured + "\n")
        with self.db.session() as session:
            accounts = AccountRepository(session)
            now = self.clock.now()
            admin = accounts.user_by_name(ADMIN_USER)
            if admin is None:
                admin = accounts.create_user(ADMIN_USER, is_admin=True, now=now)
            record = accounts.token_by_text(configured)
            if record is None:
                record = accounts.add_token(
                    admin.user_id, configured, name="admin", now=now, bootstrap=True
                )
            else:
                _check_configured(record, admin, source, settings)
                accounts.mark_bootstrap(record.token_id)
            for previous in accounts.bootstrap_tokens():
                if previous.token_id != record.token_id:
                    accounts.revoke_token(previous.token_id, now)
                    log.warning(
                        "revoked the previous admin token %s... (token_id %s): it is no longer "
                        "the configured one (%s)",
                        previous.prefix,
                        previous.token_id,
                        source,
                    )
        return generated

    def recently_authenticated(self, token: str | None) -> User | None:
        """The user of a token that authenticated within TOKEN_CACHE_S, without reading
        the store; None when it did not (``authenticate`` then decides)."""
        if not token:
            return None
        with self._recent_lock:
            return self._recent.get(hash_token(token))

    def authenticate(self, token: str | None) -> User:
        if not token:
            raise refusals.no_token()
        with self.db.session() as session:
            user = AccountRepository(session).user_for_token(token)
        if user is None:
            raise refusals.unknown_token()
        with self._recent_lock:
            self._recent[hash_token(token)] = user
        return user

    def _forget_recent(self) -> None:
        with self._recent_lock:
            self._recent.clear()

    @staticmethod
    def require_admin(user: User, action: str = "managing users and tokens") -> None:
        """Refuses a non-admin, naming ``action`` (what the caller asked to do)."""
        if not user.is_admin:
            raise Forbidden(f"{action} needs the admin token")

    def create_user(self, name: str) -> User:
        name = _check_name("name", name)
        with self.db.session() as session:
            accounts = AccountRepository(session)
            if accounts.user_by_name(name) is not None:
                raise Conflict(
                    f"name: a user named {name!r} exists already", code=ErrorCode.NAME_IN_USE
                )
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
        """Revokes a token, except the configured admin token: revoking that one would
        lock the operator out until a restart quietly brought it back."""
        with self.db.session() as session:
            accounts = AccountRepository(session)
            current = accounts.token_by_id(token_id)
            if current is not None and current.bootstrap and current.revoked_at is None:
                raise Conflict(
                    "this is the admin token moorage was started with (MOORAGE_ADMIN_TOKEN "
                    "or its token file) and cannot be revoked here; to replace it, set "
                    "MOORAGE_ADMIN_TOKEN to a new token and restart moorage, which then "
                    "revokes this one",
                    code=ErrorCode.ADMIN_TOKEN_CONFIGURED,
                )
            record = accounts.revoke_token(token_id, self.clock.now())
        self._forget_recent()
        if record is None:
            raise NotFound(f"no token {token_id!r}; GET /v1/tokens lists them")
        self.on_change()
        return record


def _check_configured(record: ApiToken, admin: User, source: str, settings: Settings) -> None:
    """Stops the start when the configured token cannot be the admin's."""
    fix = (
        "set MOORAGE_ADMIN_TOKEN to a new secret (for example the output of "
        "`python3 -c 'import secrets; print(\"mrg_\" + secrets.token_urlsafe(32))'`)"
        + (
            f", or delete {settings.admin_token_file} so moorage generates one,"
            if settings.admin_token is None
            else ""
        )
        + " and start moorage again"
    )
    if record.user_id != admin.user_id:
        raise MoorageError(
            f"the admin token from {source} ({record.prefix}...) is a token of another user, "
            f"not of the admin; {fix}",
            code=ErrorCode.ADMIN_TOKEN_INVALID,
        )
    if record.revoked_at is not None:
        raise MoorageError(
            f"the admin token from {source} ({record.prefix}...) was revoked at "
            f"{record.revoked_at.isoformat()}; a revoked token is never brought back; {fix}",
            code=ErrorCode.ADMIN_TOKEN_REVOKED,
        )
