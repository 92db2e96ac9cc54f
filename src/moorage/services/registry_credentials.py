"""Per-user credentials for private image registries (docker runtime).

Stored like secrets (``services/secrets.py``): encrypted, write-only, listed by
registry only. When a replica of the user's endpoint starts, the docker runtime
pulls its image with the credentials stored for the image's registry
(``controller/launch_secrets.py``); another user's are never used.
"""

from __future__ import annotations

import json
import re

from moorage.clock import Clock
from moorage.errors import ErrorCode, Forbidden, InvalidField, NotFound
from moorage.models.accounts import User
from moorage.models.requests import REGISTRY_PATTERN
from moorage.secretbox import SecretBox
from moorage.services.secrets import SecretInfo
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.secrets import SecretRepository

REGISTRY = "registry"
# Registries one user keeps credentials for; an installation's users need a few.
MAX_REGISTRIES = 16
_REGISTRY = re.compile(REGISTRY_PATTERN)


MAX_PORT = 65535


def check_registry(registry: str) -> None:
    port = registry.rpartition(":")[2] if ":" in registry else None
    if not _REGISTRY.fullmatch(registry) or (port is not None and not 0 < int(port) <= MAX_PORT):
        raise InvalidField(
            "registry",
            "must be a registry host, with a port where it has one, as in the image "
            "name: ghcr.io, registry.example.com:5000, docker.io",
        )


class RegistryCredentialService:
    def __init__(self, db: Database, clock: Clock, box: SecretBox) -> None:
        self.db = db
        self.clock = clock
        self.box = box

    def put(self, user: User, registry: str, username: str, password: str) -> SecretInfo:
        """Creates or replaces; pulls from now on use them."""
        check_registry(registry)
        sealed = self.box.encrypt(json.dumps({"username": username, "password": password}).encode())
        with self.db.checked_session() as session:
            AccountRepository(session).lock_user(user.user_id)
            stored = SecretRepository(session, REGISTRY)
            new = not stored.list(user.user_id, [registry])
            if new and stored.count(user.user_id) >= MAX_REGISTRIES:
                raise Forbidden(
                    f"you keep credentials for {MAX_REGISTRIES} registries, the most allowed; "
                    "delete some (DELETE /v1/registry-credentials/REGISTRY)",
                    code=ErrorCode.QUOTA_EXCEEDED,
                )
            stored.put(user.user_id, registry, sealed, self.clock.now())
            row = stored.list(user.user_id, [registry])[0]
        return SecretInfo(row.name, row.created_at, row.updated_at)

    def list(self, user: User) -> list[SecretInfo]:
        with self.db.session() as session:
            rows = SecretRepository(session, REGISTRY).list(user.user_id)
        return [SecretInfo(r.name, r.created_at, r.updated_at) for r in rows]

    def delete(self, user: User, registry: str) -> SecretInfo:
        check_registry(registry)
        with self.db.checked_session() as session:
            stored = SecretRepository(session, REGISTRY)
            found = stored.list(user.user_id, [registry])
            if not found:
                raise NotFound(
                    f"you have no credentials for {registry}; "
                    "GET /v1/registry-credentials lists yours"
                )
            stored.delete(user.user_id, registry)
        return SecretInfo(found[0].name, found[0].created_at, found[0].updated_at)
