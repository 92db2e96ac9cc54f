"""How a token is kept and compared: by its SHA-256, in the store and in route tables.

Its own module so the gateway can hash a caller's token without loading the
store (and SQLAlchemy) it never touches.
"""

from __future__ import annotations

import hashlib


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
