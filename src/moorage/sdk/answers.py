"""Reading the server's answers, the same for both clients: a body into its model, a
refusal into ``ApiError`` with the server's code and message, the bounds on what one
answer may cost, and the rules for pages and names that need no I/O."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, TypeVar

from moorage.api.schemas import Endpoint
from moorage.sdk.calls import _TEXT, Call
from moorage.sdk.errors import ANSWER_TOO_LARGE, ANSWER_TOO_SLOW, BAD_ANSWER, UNREACHABLE, ApiError
from moorage.sdk.target import Target, unreachable_message

T = TypeVar("T")

USER_AGENT = "moorage-sdk"
# What one answer may hold (a page of 100 endpoints is well under 1 MiB; a year of
# usage as CSV a few), and one line of a log stream.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
MAX_LINE_CHARS = 1024 * 1024
# An id lookup that is refused with one of these may still be a name.
NOT_AN_ID = frozenset({400, 404, 422})


def headers(target: Target, call: Call[Any]) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {target.token}",
        "Accept": call.accept,
        "User-Agent": USER_AGENT,
    }


def read(call: Call[T], status: int, body: bytes, target: Target) -> T:
    """The answer's body in its model; a refusal (4xx, 5xx) as ``ApiError``; anything
    else the body cannot be read as (a proxy's page, a redirect, another program on
    that port) as ``ApiError`` ``bad_answer``, never a validation traceback."""
    if status >= 400:
        raise refusal(status, body)
    try:
        if call.answer is _TEXT:
            return call.answer.validate_python(body.decode("utf-8", "replace"))
        return call.answer.validate_json(body)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ApiError(
            status,
            BAD_ANSWER,
            f"the server at {target.url} answered {status} with something moorage cannot "
            f"read ({first}); is it a moorage server, of this version?",
        ) from None


def refusal(status: int, body: bytes) -> ApiError:
    """The server's ``{"code", "message"}``; for an answer without one (a proxy's
    page), the status and the start of the text."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        code = parsed.get("code")
        return ApiError(
            status, code if isinstance(code, str) else f"http_{status}", parsed["message"]
        )
    text = body.decode("utf-8", "replace").strip()[:300] or f"HTTP {status}"
    return ApiError(status, f"http_{status}", text)


class Bounds:
    """What one answer may cost: at most ``max_bytes`` of body, all read within
    ``seconds``, so a server that answers without end, or a byte at a time, cannot
    take a client's memory or hold it forever."""

    def __init__(self, target: Target, seconds: float, max_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.target = target
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.max_bytes = max_bytes
        self.body = bytearray()
        self.counted = 0

    def add(self, chunk: bytes) -> None:
        self.body += chunk
        self.count(0)

    def count(self, size: int) -> None:
        """Counts ``size`` more bytes (or characters) read and not kept here."""
        self.counted += size
        if len(self.body) + self.counted > self.max_bytes:
            raise ApiError(
                0,
                ANSWER_TOO_LARGE,
                f"the server at {self.target.url} answered more than "
                f"{self.max_bytes // (1024 * 1024)} MiB; the answer was dropped",
            )
        self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise self.too_slow()

    def too_slow(self) -> ApiError:
        return ApiError(
            0,
            ANSWER_TOO_SLOW,
            f"the server at {self.target.url} did not finish its answer within "
            f"{self.seconds:g} s; the call was given up",
        )


class Lines:
    """A stream's lines, each cut at ``max_chars`` (a line without end cannot take a
    client's memory): what ``logs`` yields."""

    def __init__(self, max_chars: int = MAX_LINE_CHARS) -> None:
        self.max_chars = max_chars
        self.pending = ""

    def feed(self, text: str) -> list[str]:
        self.pending += text
        *complete, self.pending = self.pending.split("\n")
        if len(self.pending) > self.max_chars:
            complete.append(self.pending[: self.max_chars])
            self.pending = ""
        return [line.removesuffix("\r")[: self.max_chars] for line in complete]

    def end(self) -> list[str]:
        rest, self.pending = self.pending, ""
        return [rest] if rest else []


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
