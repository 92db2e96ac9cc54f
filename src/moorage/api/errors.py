"""Every error leaves the API as ``{"code", "message"}`` naming what to fix.

A message never grows with the input: a rejected value is quoted up to
``ECHO_CHARS`` characters, at most ``MAX_LISTED_ERRORS`` problems are listed,
and the whole message is cut at ``MAX_ERROR_MESSAGE_CHARS`` (the ``maxLength``
the OpenAPI document gives it). A 200 MB name used to come back whole.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from moorage.api.openapi import allowed_methods
from moorage.api.schemas import MAX_ERROR_MESSAGE_CHARS
from moorage.errors import ErrorCode, MoorageError

ECHO_CHARS = 64
MAX_LISTED_ERRORS = 10
ELLIPSIS = "..."

# Bounded work whatever the value: long strings and deep or wide containers are cut
# while the representation is built, not after.
_echo = reprlib.Repr()
_echo.maxstring = ECHO_CHARS
_echo.maxother = ECHO_CHARS
_echo.maxlong = ECHO_CHARS
_echo.maxlevel = 2
_echo.maxlist = _echo.maxtuple = _echo.maxdict = _echo.maxset = 4


def echo(value: Any) -> str:
    """A rejected value as a message quotes it: at most ``ECHO_CHARS`` characters,
    then ``...``."""
    text = _echo.repr(value)
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + ELLIPSIS


def _cut(text: str) -> str:
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + ELLIPSIS


def bounded(message: str) -> str:
    """A message cut to ``MAX_ERROR_MESSAGE_CHARS`` (the ellipsis included)."""
    if len(message) <= MAX_ERROR_MESSAGE_CHARS:
        return message
    return message[: MAX_ERROR_MESSAGE_CHARS - len(ELLIPSIS)] + ELLIPSIS


def _location(loc: tuple[Any, ...]) -> str:
    # Dict keys are the caller's text too (an unknown field, an env name): cut them.
    # Only the first part says where FastAPI found it; a field may be named "path".
    if loc and loc[0] in ("body", "query", "path"):
        loc = loc[1:]
    parts = [_cut(str(p)) for p in loc]
    return ".".join(parts) or "body"


# Bodies whose value is a secret (a secret's value, a registry login, which docs/api.md
# promises is never shown): an error about them says what is wrong, never what was
# sent, which may be most of it.
NEVER_ECHOED = {("body", "value"), ("body", "password"), ("body", "username")}


def _texts(value: Any, depth: int = 2) -> list[str]:
    """The strings of a rejected value, a few levels and items deep (bounded work)."""
    if isinstance(value, str):
        return [value[:ECHO_CHARS]]
    if depth == 0:
        return []
    items = list(value.values()) if isinstance(value, dict) else value
    if not isinstance(items, list | tuple):
        return []
    return [text for item in items[:16] for text in _texts(item, depth - 1)]


def _quotes_input(message: str, value: Any) -> bool:
    """Whether a validator's own message already names the rejected value (``mount_path
    '/etc' ...``, ``NVIDIA_X is set by moorage alone``): the value is then not quoted a
    second time. A short text (``a``) is too likely to be a word of the message."""
    return any(
        re.search(rf"(?<![\w/.-]){re.escape(text)}(?![\w/.-])", message)
        for text in _texts(value)
        if len(text) >= 3
    )


def describe_validation_error(error: dict[str, Any]) -> str:
    loc = tuple(error.get("loc", ()))
    where = _location(loc)
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return f"{where}: unknown field; check its spelling against the API reference"
    if kind == "missing":
        return f"{where}: required field is missing"
    # pydantic prefixes a validator's own message; the message says it all.
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    secret = loc in NEVER_ECHOED
    if (
        "input" in error
        and not secret
        and kind not in ("model_attributes_type", "dict_type")
        and not _quotes_input(message, error["input"])
    ):
        return f"{where}: {message}, got {echo(error['input'])}"
    return f"{where}: {message}"


def describe_validation_errors(errors: list[dict[str, Any]]) -> str:
    """The first ``MAX_LISTED_ERRORS`` problems, then how many more there are."""
    shown = [describe_validation_error(e) for e in errors[:MAX_LISTED_ERRORS]]
    if len(errors) > MAX_LISTED_ERRORS:
        shown.append(f"and {len(errors) - MAX_LISTED_ERRORS} more")
    return bounded("; ".join(shown))


async def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        position = detail.get("ctx", {}).get("error", "")
        return JSONResponse(
            {
                "code": ErrorCode.MALFORMED_JSON,
                "message": bounded(f"the request body is not valid JSON: {position}"),
            },
            status_code=400,
        )
    return JSONResponse(
        {
            "code": ErrorCode.INVALID_REQUEST,
            "message": describe_validation_errors(errors),
        },
        status_code=422,
    )


async def _moorage(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MoorageError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(round(exc.retry_after_s))
    return JSONResponse(
        {"code": exc.code, "message": bounded(exc.message)},
        status_code=exc.status_code,
        headers=headers or None,
    )


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(
        exc.status_code, "http_error"
    )
    headers = dict(exc.headers or {})
    message = str(exc.detail)
    if exc.status_code == 405:
        # Starlette names the methods of the first route that matched the path only;
        # a path served by several routes (GET and POST /v1/inference-service) has more.
        # A route kept out of the document (the dashboard's files) names its own.
        allowed = allowed_methods(request.app.openapi(), request.url.path) or sorted(
            m.strip() for m in headers.get("Allow", "").split(",") if m.strip()
        )
        headers["Allow"] = ", ".join(allowed)
        message = f"{request.method} is not allowed here; use {', '.join(allowed)}"
    return JSONResponse(
        {"code": code, "message": bounded(message)},
        status_code=exc.status_code,
        headers=headers or None,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(MoorageError, _moorage)
    app.add_exception_handler(StarletteHTTPException, _http)
