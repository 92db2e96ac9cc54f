"""Secrets in the store: encrypted bytes only, per user, bounded, read back only to
start a replica of their owner."""

from __future__ import annotations

import dataclasses
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from moorage import secretbox
from moorage.clock import FakeClock
from moorage.controller.launch_secrets import registry_auth_for, secrets_for
from moorage.errors import Forbidden, InvalidField, NotFound
from moorage.models.accounts import User
from moorage.models.endpoints import DeploySpec, Endpoint
from moorage.runtimes.base import StartError
from moorage.secretbox import SecretBox
from moorage.services.quotas import Quotas, QuotaService
from moorage.services.registry_credentials import RegistryCredentialService
from moorage.services.secrets import SecretService, check_named
from moorage.settings import Settings
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.tables import UserSecretRow
from tests.unit.builders import make_endpoint

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VALUE = "hf_averysecretvalue0123456789"


def _user(db: Database, name: str, *, is_admin: bool = False) -> User:
    with db.session() as session:
        return AccountRepository(session).create_user(name, is_admin=is_admin, now=T0)


def _service(db: Database, box: SecretBox, limit: int = 2) -> SecretService:
    quotas = dataclasses.replace(Quotas.defaults(Settings()), secrets=limit)
    return SecretService(db, FakeClock(T0), box, QuotaService(db, FakeClock(T0), quotas))


def _endpoint_naming(user: User, *names: str, env: dict[str, str] | None = None) -> Endpoint:
    endpoint = make_endpoint(user_id=user.user_id)
    deploy = DeploySpec(
        image_url="local", command="true", port=8000, env=env or {}, secrets=tuple(names)
    )
    return dataclasses.replace(endpoint, deploy=deploy)


def test_the_store_holds_ciphertext_and_only_the_owner_reads_it(db: Database) -> None:
    box = SecretBox.generate()
    service = _service(db, box)
    alice, bob = _user(db, "alice"), _user(db, "bob")
    service.put(alice, "HF_TOKEN", VALUE)
    service.put(bob, "HF_TOKEN", "bobs-own-value")

    with db.session() as session:
        stored = session.scalars(select(UserSecretRow)).all()
    assert len(stored) == 2
    assert all(VALUE.encode() not in row.ciphertext for row in stored)
    assert all(b"bobs-own-value" not in row.ciphertext for row in stored)

    assert [s.name for s in service.list(alice)] == ["HF_TOKEN"]
    assert secrets_for(db, box, _endpoint_naming(alice, "HF_TOKEN")) == {"HF_TOKEN": VALUE}
    assert secrets_for(db, box, _endpoint_naming(bob, "HF_TOKEN")) == {"HF_TOKEN": "bobs-own-value"}
    # Another key (a lost or replaced one) opens nothing, and says so without the value.
    with pytest.raises(StartError) as refused:
        secrets_for(db, SecretBox.generate(), _endpoint_naming(alice, "HF_TOKEN"))
    assert VALUE not in str(refused.value)


def test_replacing_keeps_one_secret_and_the_new_value(db: Database) -> None:
    box = SecretBox.generate()
    service = _service(db, box)
    alice = _user(db, "alice")
    service.put(alice, "HF_TOKEN", "old")
    service.put(alice, "HF_TOKEN", "new")
    assert len(service.list(alice)) == 1
    assert secrets_for(db, box, _endpoint_naming(alice, "HF_TOKEN")) == {"HF_TOKEN": "new"}


def test_an_endpoint_may_name_only_its_owners_secrets(db: Database) -> None:
    service = _service(db, SecretBox.generate())
    alice, bob = _user(db, "alice"), _user(db, "bob")
    service.put(bob, "HF_TOKEN", VALUE)
    with db.session() as session, pytest.raises(InvalidField) as refused:
        check_named(session, alice.user_id, _endpoint_naming(alice, "HF_TOKEN").deploy)
    assert "PUT /v1/secrets/HF_TOKEN" in str(refused.value)
    service.put(alice, "HF_TOKEN", VALUE)
    with db.session() as session:
        check_named(session, alice.user_id, _endpoint_naming(alice, "HF_TOKEN").deploy)
        deploy = _endpoint_naming(alice, "HF_TOKEN", env={"HF_TOKEN": "x"}).deploy
        with pytest.raises(InvalidField, match=r"also set in deploy_metadata\.env"):
            check_named(session, alice.user_id, deploy)


def test_a_deleted_secret_fails_the_next_start_by_name(db: Database) -> None:
    box = SecretBox.generate()
    service = _service(db, box)
    alice = _user(db, "alice")
    service.put(alice, "HF_TOKEN", VALUE)
    service.delete(alice, "HF_TOKEN")
    with pytest.raises(StartError, match="no secret named HF_TOKEN"):
        secrets_for(db, box, _endpoint_naming(alice, "HF_TOKEN"))
    with pytest.raises(NotFound):
        service.delete(alice, "HF_TOKEN")


def test_names_and_count_are_bounded(db: Database) -> None:
    service = _service(db, SecretBox.generate(), limit=2)
    alice, admin = _user(db, "alice"), _user(db, "root", is_admin=True)
    with pytest.raises(InvalidField, match="environment variable name"):
        service.put(alice, "1-not-a-name", "x")
    service.put(alice, "A", "x")
    service.put(alice, "B", "x")
    service.put(alice, "B", "replaced: not a new one")
    with pytest.raises(Forbidden, match="quota exceeded: secrets is 2"):
        service.put(alice, "C", "x")
    for name in ("A", "B", "C"):  # the admin is not bound by quotas
        service.put(admin, name, "x")


def test_the_key_file_is_made_once_0600_and_reused(tmp_path: Path) -> None:
    box = secretbox.load(None, tmp_path)
    key_file = tmp_path / secretbox.KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = box.encrypt(b"v")
    assert secretbox.load(None, tmp_path).decrypt(token) == b"v"


def test_rotation_lists_the_new_key_first_and_still_opens_old_values(tmp_path: Path) -> None:
    old = secretbox.load(None, tmp_path)
    old_key = (tmp_path / secretbox.KEY_FILE_NAME).read_text().strip()
    token = old.encrypt(b"v")
    rotated = secretbox.load(f"{Fernet.generate_key().decode()},{old_key}", tmp_path)
    assert rotated.decrypt(token) == b"v"
    with pytest.raises(secretbox.SecretKeyError, match="Fernet key"):
        secretbox.load("not-a-key", tmp_path)


def test_registry_credentials_are_the_image_owners_for_its_registry(db: Database) -> None:
    box = SecretBox.generate()
    credentials = RegistryCredentialService(db, FakeClock(T0), box)
    alice, bob = _user(db, "alice"), _user(db, "bob")
    credentials.put(alice, "ghcr.io", "alice", VALUE)

    def endpoint(user: User, image: str) -> Endpoint:
        deploy = DeploySpec(image_url=image, command=None, port=8000)
        return dataclasses.replace(make_endpoint(user_id=user.user_id), deploy=deploy)

    assert registry_auth_for(db, box, endpoint(alice, "ghcr.io/alice/model:1")) == {
        "username": "alice",
        "password": VALUE,
        "serveraddress": "ghcr.io",
    }
    assert registry_auth_for(db, box, endpoint(bob, "ghcr.io/alice/model:1")) is None
    assert registry_auth_for(db, box, endpoint(alice, "python:3.10-slim")) is None
    assert [c.name for c in credentials.list(alice)] == ["ghcr.io"]
    assert credentials.list(bob) == []
    with db.session() as session:
        assert all(
            VALUE.encode() not in r.ciphertext for r in session.scalars(select(UserSecretRow))
        )
    with pytest.raises(InvalidField, match="registry host"):
        credentials.put(alice, "https://ghcr.io/", "a", "b")
    credentials.delete(alice, "ghcr.io")
    assert registry_auth_for(db, box, endpoint(alice, "ghcr.io/alice/model:1")) is None
