"""Reading the server's answers, the same for both clients: a body into its model, a
refusal into ``ApiError`` with the server's code and message, and the rules for
pages and names that need no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import httpx

from moorage.api.schemas import Endpoint
from moorage.sdk.calls import _TEXT, Call
from moorage.sdk.errors import UNREACHABLE, ApiError
from moorage.sdk.target import Target, unreachable_message

T = TypeVar("T")

USER_AGENT = "moorage-sdk"
# An id lookup that is refused with one of these may still be a name.
NOT_AN_ID = frozenset({400, 404, 422})


def headers(target: Target, call: Call[Any]) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {target.token}",
        "Accept": call.accept,
        "User-Agent": USER_AGENT,
    }


def read(call: Call[T], response: httpx.Response) -> T:
    if response.status_code >= 400:
        raise refusal(response)
    if call.answer is _TEXT:
        return call.answer.validate_python(response.text)
    return call.answer.validate_json(response.content)


def refusal(response: httpx.Response) -> ApiError:
    """The server's ``{"code", "message"}``; for an answer without one (a proxy's
    page), the status and the start of the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = body.get("code")
        return ApiError(
            response.status_code,
            code if isinstance(code, str) else f"http_{response.status_code}",
            body["message"],
        )
    text = response.text.strip()[:300] or response.reason_phrase
    return ApiError(response.status_code, f"http_{response.status_code}", text)


def unreachable(target: Target, exc: Exception) -> ApiError:
    return ApiError(0, UNREACHABLE, unreachable_message(target, str(exc) or type(exc).__name__))


def more_pages(page: int, page_size: int, got: int, total: int) -> bool:
    """Whether to read the next page: the last one was full and more are counted (an
    empty page ends it even if endpoints were deleted meanwhile)."""
    return got == page_size and page * page_size < total


def named(endpoints: Iterable[Endpoint], name_or_id: str) -> Endpoint:
    """The caller's one endpoint named ``name_or_id`` (deleted ones left out)."""
    matches = [e for e in endpoints if e.name == name_or_id and not e.is_deleted]
    if not matches:
        raise ApiError(
            404,
            "not_found",
            f"no endpoint of yours is named or has the id {name_or_id!r}; `moorage ls` lists them",
        )
    if len(matches) > 1:
        ids = ", ".join(e.service_id for e in matches)
        raise ApiError(
            409,
            "ambiguous_name",
            f"{len(matches)} of your endpoints are named {name_or_id!r} ({ids}); use its id",
        )
    return matches[0]


def timed_out(endpoint: Endpoint, timeout: float, line: str) -> str:
    return (
        f"endpoint {endpoint.name} ({endpoint.service_id}) is not available after "
        f"{timeout:g} s ({line}); it keeps going: wait again, or read its events and logs"
    )
