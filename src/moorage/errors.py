"""The errors moorage raises, shared by the server, the SDK and the CLI.

Every error carries a stable machine-readable ``code`` and a ``message`` a user
can act on; the API renders them as ``{"code": ..., "message": ...}`` with the
HTTP status held on the class, so callers never map exceptions by hand.

    MoorageError
    ├── InvalidField        400  a field's value is not allowed
    ├── Unauthenticated     401  no token, or one moorage does not know
    ├── Forbidden           403  the token is valid but lacks the right
    ├── NotFound            404  missing, deleted, or another user's
    ├── Conflict            409  e.g. a name the user already uses
    └── Unavailable         503  no capacity, no ready replica, a dependency down
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidField",
    "MoorageError",
    "NotFound",
    "Unauthenticated",
    "Unavailable",
]


class MoorageError(Exception):
    """Base of every error moorage reports to a user."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidField(MoorageError):
    status_code = 400
    code = "invalid_field"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Unauthenticated(MoorageError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(MoorageError):
    status_code = 403
    code = "forbidden"


class NotFound(MoorageError):
    status_code = 404
    code = "not_found"


class Conflict(MoorageError):
    status_code = 409
    code = "conflict"


class Unavailable(MoorageError):
    status_code = 503
    code = "unavailable"
