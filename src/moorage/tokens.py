"""How a token is made, kept and compared: by its SHA-256, in the store and in route tables.

Its own module so the gateway can hash a caller's token without loading the
store (and SQLAlchemy) it never touches.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "mrg_"


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
