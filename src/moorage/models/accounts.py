"""Users and their API tokens as the services and the API see them.

Plain values, apart from the store that keeps them, so ``api/`` and
``services/`` can name a user without importing the database layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class User:
    user_id: str
    name: str
    is_admin: bool
    created_at: datetime


@dataclass(frozen=True)
class ApiToken:
    """A token's record; the token itself is never kept, only its hash and ``prefix``."""

    token_id: str
    user_id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    bootstrap: bool = False
