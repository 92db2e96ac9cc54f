"""The error answers each route documents, as ``responses=`` for FastAPI.

A route lists the statuses its code can produce: what its dependencies raise
(401 no or bad token, 403 not the admin), what its service raises
(``moorage.errors``: 400 ``InvalidField``, 402 a spending limit reached,
403 ``Forbidden`` and quotas, 404 ``NotFound``, 409 ``Conflict``, 429 log
followers, 503 ``Unavailable``),
400/422 for a body or parameter FastAPI cannot read, and 413, which the
gateway in front answers for a body over the API's limit before the API sees
it. Every one carries ``ErrorBody``.
"""

from __future__ import annotations

from typing import Any

from moorage.api.schemas import ErrorBody

WHEN: dict[int, str] = {
    400: "A value the current state does not allow (unknown flavor, more replicas than the "
    "flavor holds, `gpu_num` above the flavor's), or a body that is not JSON "
    "(`malformed_json`).",
    401: "No token, a malformed `Authorization` header, or an unknown or revoked token "
    "(`unauthenticated`).",
    402: "The owner's spending limit in the endpoint's currency is reached "
    "(`budget_exceeded`, naming the limit and the spend): creates, starts and scale-ups "
    "are refused until the admin raises it (docs/billing.md).",
    403: "The token is valid but lacks the right: the admin token is needed (`forbidden`), "
    "or the change would exceed one of the user's quotas (`quota_exceeded`, naming it).",
    404: "No such object, a deleted one, or another user's: all three answer alike (`not_found`).",
    409: "A conflict with what exists: a name the user already uses (`name_in_use`), or "
    "the configured admin token, which only a restart replaces (`admin_token_configured`).",
    413: "The body is larger than the API accepts (`body_too_large`, "
    "`MOORAGE_API_MAX_BODY_BYTES`); the gateway answers it before the API reads the body.",
    422: "A field or parameter outside the documented schema (`invalid_request`); the "
    "message names each field and what is allowed.",
    429: "The user already holds as many log followers as their quota allows "
    "(`quota_exceeded`); one frees its slot when its client disconnects.",
    503: "moorage cannot run the change now: the flavor's capacity is held by other "
    "endpoints (`insufficient_capacity`, saying how many replicas are free), or the process "
    "runtime has no sandbox for a normal user's replicas (`sandbox_unavailable`, saying how "
    "to enable one).",
}

# What every route behind a token can answer, and what the admin routes add.
AUTH = (401,)
ADMIN = (401, 403)
# A route with a JSON body: unreadable (400), too big (413), off the schema (422).
BODY = (400, 413, 422)


def errors(*statuses: int | tuple[int, ...]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` documenting each given status with ``ErrorBody``."""
    flat: set[int] = set()
    for status in statuses:
        flat.update(status if isinstance(status, tuple) else (status,))
    return {status: {"model": ErrorBody, "description": WHEN[status]} for status in sorted(flat)}
