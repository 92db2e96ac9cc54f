"""The values of the secrets a replica is about to get, decrypted only for its start.

Read when each replica starts, so a secret changed later reaches the replicas
started after the change, and running ones keep what they started with. Only the
endpoint owner's secrets are read: another user's secret of the same name is
never used.
"""

from __future__ import annotations

from moorage.models.endpoints import Endpoint
from moorage.runtimes.base import StartError
from moorage.secretbox import SecretBox, SecretKeyError
from moorage.store.db import Database
from moorage.store.secrets import SecretRepository

ENV = "env"


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
