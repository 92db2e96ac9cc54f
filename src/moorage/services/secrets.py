"""Users' secrets: write-only values, stored encrypted, given to replicas by name.

A user stores a value once (``PUT /v1/secrets/NAME``) and names it in an
endpoint's ``deploy_metadata.secrets``; each replica started afterwards gets it
as the environment variable NAME. Nothing reads a value back: the API lists
names and times, the endpoint shows names, and only the controller decrypts, in
the moment it starts a replica (``controller/launch_secrets.py``). Secrets are
per user: another user's secret of the same name is another secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from moorage.clock import Clock
from moorage.errors import ErrorCode, Forbidden, InvalidField, NotFound
from moorage.models.accounts import User
from moorage.models.endpoints import DeploySpec
from moorage.models.requests import MAX_SECRET_NAME_CHARS, not_gpu_selecting
from moorage.secretbox import SecretBox
from moorage.services.quotas import ASK_ADMIN, QuotaService
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.secrets import SecretRepository

ENV = "env"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class SecretInfo:
    """What anyone may see of a secret: never its value."""

    name: str
    created_at: datetime
    updated_at: datetime


def check_name(name: str) -> None:
    """A secret is named like the environment variable it becomes."""
    if len(name) > MAX_SECRET_NAME_CHARS or not _NAME.fullmatch(name):
        raise InvalidField(
            "name",
            f"must be an environment variable name (letters, digits and _, not starting "
            f"with a digit, at most {MAX_SECRET_NAME_CHARS} characters), such as HF_TOKEN",
        )
    try:
        not_gpu_selecting(name)
    except ValueError as exc:
        raise InvalidField("name", str(exc)) from None


def check_named(session: Session, user_id: str, deploy: DeploySpec) -> None:
    """Refuses (400 naming it) an endpoint naming a secret its owner has not stored,
    or one its ``env`` also sets (which of the two would the replica get?)."""
    if not deploy.secrets:
        return
    clash = sorted(set(deploy.secrets) & set(deploy.env))
    if clash:
        raise InvalidField(
            "deploy_metadata.secrets",
            f"{clash[0]} is also set in deploy_metadata.env; remove it from one of them",
        )
    stored = {s.name for s in SecretRepository(session, ENV).list(user_id, deploy.secrets)}
    missing = [name for name in deploy.secrets if name not in stored]
    if missing:
        raise InvalidField(
            "deploy_metadata.secrets",
            f"you have no secret named {missing[0]}; store it first with "
            f"PUT /v1/secrets/{missing[0]} (GET /v1/secrets lists yours)",
        )


class SecretService:
    def __init__(self, db: Database, clock: Clock, box: SecretBox, quotas: QuotaService) -> None:
        self.db = db
        self.clock = clock
        self.box = box
        self.quotas = quotas

    def put(self, user: User, name: str, value: str) -> SecretInfo:
        """Creates or replaces; replicas started from now on get the new value."""
        check_name(name)
        ciphertext = self.box.encrypt(value.encode())
        limit = None if user.is_admin else self.quotas.limits(user.user_id).secrets
        with self.db.checked_session() as session:
            AccountRepository(session).lock_user(user.user_id)
            secrets = SecretRepository(session, ENV)
            if limit is not None and not secrets.list(user.user_id, [name]):
                held = secrets.count(user.user_id)
                if held + 1 > limit:
                    raise Forbidden(
                        f"quota exceeded: secrets is {limit}; you hold {held}; delete one "
                        f"you no longer need (DELETE /v1/secrets/NAME), or "
                        + ASK_ADMIN.format(user_id=user.user_id),
                        code=ErrorCode.QUOTA_EXCEEDED,
                    )
            secrets.put(user.user_id, name, ciphertext, self.clock.now())
            stored = secrets.list(user.user_id, [name])[0]
        return SecretInfo(stored.name, stored.created_at, stored.updated_at)

    def list(self, user: User) -> list[SecretInfo]:
        with self.db.session() as session:
            stored = SecretRepository(session, ENV).list(user.user_id)
        return [SecretInfo(s.name, s.created_at, s.updated_at) for s in stored]

    def delete(self, user: User, name: str) -> SecretInfo:
        """Replicas running keep the value they started with; later ones of an endpoint
        still naming it fail to start, saying which secret is missing."""
        check_name(name)
        with self.db.checked_session() as session:
            secrets = SecretRepository(session, ENV)
            found = secrets.list(user.user_id, [name])
            if not found:
                raise NotFound(f"you have no secret named {name}; GET /v1/secrets lists yours")
            secrets.delete(user.user_id, name)
        return SecretInfo(found[0].name, found[0].created_at, found[0].updated_at)
