"""Users' secrets encrypted at rest, with a key the operator holds.

The store holds only Fernet tokens (AES-128-CBC with an HMAC-SHA256, from the
``cryptography`` package): a copy of the database, a backup or a PostgreSQL
operator reads no secret without the key. The key is ``MOORAGE_SECRETS_KEY``, or
when that is unset a file ``$MOORAGE_HOME/secrets.key`` written (0600) at first
start. Losing the key loses every secret (users store them again); to rotate,
put the new key first and the old after it, comma-separated, in
``MOORAGE_SECRETS_KEY``: new values are encrypted with the first, every listed
key decrypts, and ``moorage`` re-encrypts nothing by itself (docs/security.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_FILE_NAME = "secrets.key"


class SecretKeyError(Exception):
    """The configured key cannot be used; the message says which and what to do."""


class SecretBox:
    """Encrypts and decrypts secret values; one instance per server."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError("no secrets key given")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except ValueError as exc:
            raise SecretKeyError(
                "MOORAGE_SECRETS_KEY (or the key file) is not a Fernet key: 32 url-safe "
                "base64-encoded bytes; make one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`"
            ) from exc

    @classmethod
    def generate(cls) -> SecretBox:
        """A box with a new random key (tests, and the first start)."""
        return cls([Fernet.generate_key()])

    def encrypt(self, value: bytes) -> bytes:
        return self._fernet.encrypt(value)

    def decrypt(self, token: bytes) -> bytes:
        """The value; SecretKeyError when no configured key opens it (the key changed)."""
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise SecretKeyError(
                "a stored secret cannot be decrypted with the configured key; restore "
                "the key it was stored with (MOORAGE_SECRETS_KEY or "
                f"$MOORAGE_HOME/{KEY_FILE_NAME}), or store the secret again"
            ) from exc


def load(configured: str | None, home: Path) -> SecretBox:
    """The box from ``MOORAGE_SECRETS_KEY`` (keys comma-separated, newest first), or
    from the key file in ``home``, created 0600 with a new key when missing."""
    if configured:
        return SecretBox([k.strip().encode() for k in configured.split(",") if k.strip()])
    path = home / KEY_FILE_NAME
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key() + b"\n")
    path.chmod(0o600)
    return SecretBox([path.read_bytes().strip()])
