"""The values of the secrets a replica is about to get, decrypted only for its start.

Read when each replica starts, so a secret changed later reaches the replicas
started after the change, and running ones keep what they started with. Only the
endpoint owner's secrets are read: another user's secret of the same name is
never used.
"""

from __future__ import annotations

import json

from moorage.models.endpoints import Endpoint
from moorage.runtimes.base import StartError
from moorage.runtimes.docker_images import registry_of
from moorage.secretbox import SecretBox, SecretKeyError
from moorage.store.db import Database
from moorage.store.secrets import SecretRepository

ENV = "env"
REGISTRY = "registry"


def secrets_for(db: Database, box: SecretBox | None, endpoint: Endpoint) -> dict[str, str]:
    """NAME -> value for each secret the endpoint names; StartError (shown on the
    endpoint, retried with backoff) naming a secret deleted since, never a value."""
    names = endpoint.deploy.secrets
    if not names:
        return {}
    if box is None:
        raise StartError("deploy_metadata.secrets: this server has no secrets key")
    with db.session() as session:
        stored = {s.name: s for s in SecretRepository(session, ENV).list(endpoint.user_id, names)}
    values: dict[str, str] = {}
    for name in names:
        secret = stored.get(name)
        if secret is None:
            raise StartError(
                f"deploy_metadata.secrets: you have no secret named {name} (deleted?); "
                f"store it again with PUT /v1/secrets/{name}"
            )
        try:
            values[name] = box.decrypt(secret.ciphertext).decode()
        except SecretKeyError as exc:
            raise StartError(f"deploy_metadata.secrets: {name}: {exc}") from exc
    return values


def registry_auth_for(
    db: Database, box: SecretBox | None, endpoint: Endpoint
) -> dict[str, str] | None:
    """The owner's credentials for the registry of the endpoint's image, as the
    engine's ``X-Registry-Auth`` takes them; None when the owner stored none (the
    engine's own configuration applies, as for any public image)."""
    if box is None:
        return None
    try:
        registry = registry_of(endpoint.deploy.image_url)
    except Exception:  # an image reference docker-py cannot parse: the pull says why
        return None
    with db.session() as session:
        stored = SecretRepository(session, REGISTRY).list(endpoint.user_id, [registry])
    if not stored:
        return None
    try:
        credentials = json.loads(box.decrypt(stored[0].ciphertext))
    except SecretKeyError as exc:
        raise StartError(f"registry credentials for {registry}: {exc}") from exc
    return {
        "username": str(credentials["username"]),
        "password": str(credentials["password"]),
        "serveraddress": registry,
    }
