"""The errors moorage raises, shared by the server, the SDK and the CLI.

Every error carries a stable machine-readable ``code`` and a ``message`` a user
can act on; the API renders them as ``{"code": ..., "message": ...}`` with the
HTTP status held on the class, so callers never map exceptions by hand.

    MoorageError
    ├── BadRequest          400  the request itself is malformed
    │   └── InvalidField    400  a field's value is not allowed
    ├── Unauthenticated     401  no token, or one moorage does not know
    ├── PaymentRequired     402  the owner's spending limit is reached
    ├── Forbidden           403  the token is valid but lacks the right
    ├── NotFound            404  missing, deleted, or another user's
    ├── RequestTimeout      408  the client was too slow sending its request
    ├── Conflict            409  e.g. a name the user already uses
    ├── PayloadTooLarge     413  a body over its limit
    ├── UriTooLong          414  a request line over its limit
    ├── TooManyRequests     429  a queue or a quota of open streams is full
    ├── HeadersTooLarge     431  a header, or all of them, over their limit
    ├── BadGateway          502  a replica or the API did not answer properly
    ├── Unavailable         503  no free capacity, no ready replica, a dependency down
    └── GatewayTimeout      504  a replica did not answer in time

``code`` names the case within a status (``ErrorCode`` lists every one the
API and the gateway answer with); ``retry_after_s``, when set, is sent as
``Retry-After``. The messages themselves are written in ``refusals.py`` where
more than one place says them.
"""

from __future__ import annotations

import enum

__all__ = [
    "BadGateway",
    "BadRequest",
    "Conflict",
    "ErrorCode",
    "Forbidden",
    "GatewayTimeout",
    "HeadersTooLarge",
    "InvalidField",
    "MoorageError",
    "NotFound",
    "PayloadTooLarge",
    "PaymentRequired",
    "RequestTimeout",
    "TooManyRequests",
    "Unauthenticated",
    "Unavailable",
    "UriTooLong",
]


class ErrorCode(enum.StrEnum):
    """Every ``code`` an error body can carry, from the API or the gateway."""

    INTERNAL_ERROR = "internal_error"
    # moorage cannot start: the operator's files
    INVALID_FLAVOR_FILE = "invalid_flavor_file"
    # 400
    BAD_REQUEST = "bad_request"
    INVALID_FIELD = "invalid_field"
    MALFORMED_JSON = "malformed_json"
    # 401, 402, 403
    UNAUTHENTICATED = "unauthenticated"
    BUDGET_EXCEEDED = "budget_exceeded"
    FORBIDDEN = "forbidden"
    QUOTA_EXCEEDED = "quota_exceeded"
    ADMIN_TOKEN_INVALID = "admin_token_invalid"
    ADMIN_TOKEN_REVOKED = "admin_token_revoked"
    # 404, 405
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    # 408
    HEADER_TIMEOUT = "header_timeout"
    BODY_TIMEOUT = "body_timeout"
    # 409
    CONFLICT = "conflict"
    NAME_IN_USE = "name_in_use"
    ADMIN_TOKEN_CONFIGURED = "admin_token_configured"
    # 413, 414, 431
    BODY_TOO_LARGE = "body_too_large"
    URL_TOO_LONG = "url_too_long"
    HEADER_TOO_LARGE = "header_too_large"
    HEADERS_TOO_LARGE = "headers_too_large"
    # 422
    INVALID_REQUEST = "invalid_request"
    # 429
    OVERLOADED = "overloaded"
    # 502
    REPLICA_UNREACHABLE = "replica_unreachable"
    API_UNREACHABLE = "api_unreachable"
    BAD_REPLICA_RESPONSE = "bad_replica_response"
    # 503
    UNAVAILABLE = "unavailable"
    NO_READY_REPLICA = "no_ready_replica"
    COLD_START_TIMEOUT = "cold_start_timeout"
    CANNOT_START = "cannot_start"
    QUEUE_TIMEOUT = "queue_timeout"
    INSUFFICIENT_CAPACITY = "insufficient_capacity"
    RUNTIME_UNAVAILABLE = "runtime_unavailable"
    SANDBOX_UNAVAILABLE = "sandbox_unavailable"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    # 504
    IDLE_TIMEOUT = "idle_timeout"
    REQUEST_TIMEOUT = "request_timeout"


class MoorageError(Exception):
    """Base of every error moorage reports to a user."""

    status_code = 500
    code: str = ErrorCode.INTERNAL_ERROR

    def __init__(
        self, message: str, *, code: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.retry_after_s = retry_after_s


class BadRequest(MoorageError):
    status_code = 400
    code = ErrorCode.BAD_REQUEST


class InvalidField(BadRequest):
    code = ErrorCode.INVALID_FIELD

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Unauthenticated(MoorageError):
    status_code = 401
    code = ErrorCode.UNAUTHENTICATED


class PaymentRequired(MoorageError):
    status_code = 402
    code = ErrorCode.BUDGET_EXCEEDED


class Forbidden(MoorageError):
    status_code = 403
    code = ErrorCode.FORBIDDEN


class NotFound(MoorageError):
    status_code = 404
    code = ErrorCode.NOT_FOUND


class RequestTimeout(MoorageError):
    status_code = 408
    code = ErrorCode.HEADER_TIMEOUT


class Conflict(MoorageError):
    status_code = 409
    code = ErrorCode.CONFLICT


class PayloadTooLarge(MoorageError):
    status_code = 413
    code = ErrorCode.BODY_TOO_LARGE


class UriTooLong(MoorageError):
    status_code = 414
    code = ErrorCode.URL_TOO_LONG


class TooManyRequests(MoorageError):
    status_code = 429
    code = ErrorCode.OVERLOADED


class HeadersTooLarge(MoorageError):
    status_code = 431
    code = ErrorCode.HEADERS_TOO_LARGE


class BadGateway(MoorageError):
    status_code = 502
    code = ErrorCode.REPLICA_UNREACHABLE


class Unavailable(MoorageError):
    status_code = 503
    code = ErrorCode.UNAVAILABLE


class GatewayTimeout(MoorageError):
    status_code = 504
    code = ErrorCode.IDLE_TIMEOUT
