"""Users and API tokens on a real store: tokens live only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from moorage.clock import FakeClock
from moorage.errors import Conflict, MoorageError, Unauthenticated
from moorage.models.accounts import User
from moorage.services.accounts import TOKEN_CACHE_S, AccountService
from moorage.settings import Settings
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.tokens import generate_token

T0 = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_user(db: Database, name: str, *, is_admin: bool = False) -> User:
    with db.session() as session:
        return AccountRepository(session).create_user(name, is_admin=is_admin, now=T0)


def test_token_is_stored_only_as_its_sha256_hash(db: Database) -> None:
    user = _new_user(db, "alice")
    token = generate_token()
    with db.session() as session:
        stored = AccountRepository(session).add_token(user.user_id, token, name="laptop", now=T0)

    with db.engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(text("SELECT * FROM api_tokens"))]
    assert len(rows) == 1
    row = rows[0]
    assert row["token_hash"] == _sha256(token)
    assert row["token_id"] == stored.token_id
    assert row["user_id"] == user.user_id
    # Neither the token nor any long piece of it is kept in any column.
    for column, value in row.items():
        assert token not in str(value), f"plain token found in api_tokens.{column}"
        assert token[8:] not in str(value), f"token secret found in api_tokens.{column}"
    assert stored.prefix == token[:8]


def test_user_for_token_finds_its_user_and_nobody_else(db: Database) -> None:
    alice = _new_user(db, "alice", is_admin=True)
    bob = _new_user(db, "bob")
    alice_token, bob_token = generate_token(), generate_token()
    with db.session() as session:
        accounts = AccountRepository(session)
        accounts.add_token(alice.user_id, alice_token, name="ci", now=T0)
        accounts.add_token(bob.user_id, bob_token, name="ci", now=T0)

    with db.session() as session:
        accounts = AccountRepository(session)
        found = accounts.user_for_token(alice_token)
        assert found == alice
        assert found is not None
        assert found.is_admin is True
        assert found.created_at == T0
        assert found.created_at.utcoffset() == timedelta(0)
        assert accounts.user_for_token(bob_token) == bob
        assert accounts.user_for_token(generate_token()) is None
        assert accounts.user_for_token(alice_token + "x") is None
        assert accounts.user_for_token(_sha256(alice_token)) is None  # the hash is no key


def test_revoked_token_no_longer_authenticates(db: Database) -> None:
    user = _new_user(db, "alice")
    kept, revoked = generate_token(), generate_token()
    with db.session() as session:
        accounts = AccountRepository(session)
        accounts.add_token(user.user_id, kept, name="kept", now=T0)
        to_revoke = accounts.add_token(user.user_id, revoked, name="old", now=T0)

    revoked_at = T0 + timedelta(hours=1)
    with db.session() as session:
        result = AccountRepository(session).revoke_token(to_revoke.token_id, revoked_at)
        assert result is not None
        assert result.revoked_at == revoked_at

    with db.session() as session:
        accounts = AccountRepository(session)
        assert accounts.user_for_token(revoked) is None
        assert accounts.user_for_token(kept) == user
        again = accounts.revoke_token(to_revoke.token_id, revoked_at + timedelta(days=1))
        assert again is not None
        assert again.revoked_at == revoked_at, "revoking twice must keep the first time"
        assert accounts.revoke_token("0" * 32, revoked_at) is None

    with db.session() as session:
        stored = AccountRepository(session).token_by_id(to_revoke.token_id)
        assert stored is not None
        assert stored.revoked_at == revoked_at
        assert stored.revoked_at.tzinfo is not None


def test_active_token_hashes_group_by_user_and_skip_revoked(db: Database) -> None:
    alice = _new_user(db, "alice")
    bob = _new_user(db, "bob")
    carol = _new_user(db, "carol")  # only a revoked token
    _new_user(db, "dave")  # no token at all
    tokens = {name: generate_token() for name in ("a1", "a2", "a3", "b1", "c1")}
    with db.session() as session:
        accounts = AccountRepository(session)
        ids = {
            "a1": accounts.add_token(alice.user_id, tokens["a1"], name="a1", now=T0),
            "a2": accounts.add_token(alice.user_id, tokens["a2"], name="a2", now=T0),
            "a3": accounts.add_token(alice.user_id, tokens["a3"], name="a3", now=T0),
            "b1": accounts.add_token(bob.user_id, tokens["b1"], name="b1", now=T0),
            "c1": accounts.add_token(carol.user_id, tokens["c1"], name="c1", now=T0),
        }
    with db.session() as session:
        accounts = AccountRepository(session)
        accounts.revoke_token(ids["a2"].token_id, T0)
        accounts.revoke_token(ids["c1"].token_id, T0)

    with db.session() as session:
        hashes = AccountRepository(session).active_token_hashes()

    assert hashes == {
        alice.user_id: frozenset({_sha256(tokens["a1"]), _sha256(tokens["a3"])}),
        bob.user_id: frozenset({_sha256(tokens["b1"])}),
    }


def test_timestamps_come_back_as_the_same_instant_in_utc(db: Database) -> None:
    plus_two = timezone(timedelta(hours=2))
    created = datetime(2026, 3, 1, 14, 0, 0, 123_456, tzinfo=plus_two)
    with db.session() as session:
        user = AccountRepository(session).create_user("alice", is_admin=False, now=created)
    with db.session() as session:
        stored = AccountRepository(session).user_by_id(user.user_id)
    assert stored is not None
    assert stored.created_at == created
    assert stored.created_at.tzinfo == UTC
    assert stored.created_at.hour == 12
    assert stored.created_at.microsecond == 123_456


def test_failed_session_block_stores_no_user_and_no_token(db: Database) -> None:
    token = generate_token()

    def sign_up_then_fail() -> None:
        with db.session() as session:
            accounts = AccountRepository(session)
            user = accounts.create_user("alice", is_admin=False, now=T0)
            accounts.add_token(user.user_id, token, name="t", now=T0)
            raise RuntimeError("boom after the writes")

    with pytest.raises(RuntimeError, match="boom"):
        sign_up_then_fail()
    with db.session() as session:
        accounts = AccountRepository(session)
        assert accounts.user_by_name("alice") is None
        assert accounts.user_for_token(token) is None
        assert accounts.token_by_text(token) is None
        assert list(accounts.list_tokens()) == []


# -- the configured admin token (AccountService.ensure_admin on a real store) ------------


def _settings(tmp_path: Path, token: str | None) -> Settings:
    return Settings(home=tmp_path, admin_token=SecretStr(token) if token else None)


def test_token_by_text_finds_revoked_tokens_too(db: Database) -> None:
    user = _new_user(db, "alice")
    token = generate_token()
    with db.session() as session:
        accounts = AccountRepository(session)
        record = accounts.add_token(user.user_id, token, name="t", now=T0, bootstrap=True)
        accounts.revoke_token(record.token_id, T0)
    with db.session() as session:
        accounts = AccountRepository(session)
        found = accounts.token_by_text(token)
        assert found is not None
        assert found.revoked_at == T0
        assert found.bootstrap is True
        assert accounts.token_by_text(generate_token()) is None
        assert list(accounts.bootstrap_tokens()) == []


def test_the_configured_admin_token_replaces_the_previous_one(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = AccountService(db, FakeClock())
    old, new = generate_token(), generate_token()
    service.ensure_admin(_settings(tmp_path, old))
    service.ensure_admin(_settings(tmp_path, old))  # same token: nothing changes
    assert service.authenticate(old).is_admin

    with caplog.at_level(logging.WARNING):
        service.ensure_admin(_settings(tmp_path, new))
    assert service.authenticate(new).is_admin
    with pytest.raises(Unauthenticated):
        service.authenticate(old)
    revoked = [r.getMessage() for r in caplog.records if "previous admin token" in r.getMessage()]
    assert len(revoked) == 1
    assert old[:8] in revoked[0]
    assert old not in revoked[0]


def test_the_configured_admin_token_cannot_be_revoked(db: Database, tmp_path: Path) -> None:
    service = AccountService(db, FakeClock())
    token = generate_token()
    service.ensure_admin(_settings(tmp_path, token))
    configured = next(t for t in service.list_tokens() if t.bootstrap)
    with pytest.raises(Conflict) as refused:
        service.revoke_token(configured.token_id)
    assert refused.value.code == "admin_token_configured"
    assert service.authenticate(token).is_admin


def test_a_revoked_or_foreign_configured_token_stops_the_start(
    db: Database, tmp_path: Path
) -> None:
    service = AccountService(db, FakeClock())
    old, new = generate_token(), generate_token()
    service.ensure_admin(_settings(tmp_path, old))
    service.ensure_admin(_settings(tmp_path, new))
    with pytest.raises(MoorageError, match="was revoked") as revoked:
        service.ensure_admin(_settings(tmp_path, old))
    assert revoked.value.code == "admin_token_revoked"
    assert old not in revoked.value.message

    issued = service.create_token(user_name="alice", create_user=True)
    with pytest.raises(MoorageError, match="another user") as foreign:
        service.ensure_admin(_settings(tmp_path, issued.token))
    assert foreign.value.code == "admin_token_invalid"
    assert not service.authenticate(issued.token).is_admin
    assert service.authenticate(new).is_admin


def test_a_token_seen_recently_is_known_without_the_store_for_a_few_seconds(
    db: Database,
) -> None:
    """What another process revokes (the store changed behind this service) stops
    working within TOKEN_CACHE_S; what this service revokes stops at once."""
    clock = FakeClock(T0)
    service = AccountService(db, clock)
    user = _new_user(db, "alice")
    elsewhere, here = generate_token(), generate_token()
    with db.session() as session:
        accounts = AccountRepository(session)
        first = accounts.add_token(user.user_id, elsewhere, name="a", now=T0)
        second = accounts.add_token(user.user_id, here, name="b", now=T0)
    assert service.recently_authenticated(elsewhere) is None  # never seen yet
    assert service.authenticate(elsewhere) == user
    assert service.authenticate(here) == user
    assert service.recently_authenticated(elsewhere) == user

    with db.session() as session:  # revoked by another process
        AccountRepository(session).revoke_token(first.token_id, T0)
    clock.advance(TOKEN_CACHE_S - 0.5)
    assert service.recently_authenticated(elsewhere) == user
    clock.advance(1.0)
    assert service.recently_authenticated(elsewhere) is None
    with pytest.raises(Unauthenticated):
        service.authenticate(elsewhere)

    assert service.authenticate(here) == user
    service.revoke_token(second.token_id)
    assert service.recently_authenticated(here) is None
    with pytest.raises(Unauthenticated):
        service.authenticate(here)


def test_unknown_tokens_are_never_remembered(db: Database) -> None:
    service = AccountService(db, FakeClock(T0))
    for _ in range(3):
        guess = generate_token()
        with pytest.raises(Unauthenticated):
            service.authenticate(guess)
        assert service.recently_authenticated(guess) is None
    assert service.recently_authenticated(None) is None
    assert service.recently_authenticated("") is None
