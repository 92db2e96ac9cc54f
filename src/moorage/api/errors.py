"""Every error leaves the API as ``{"code", "message"}`` naming what to fix."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from moorage.errors import MoorageError


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def describe_validation_error(error: dict[str, Any]) -> str:
    where = _location(tuple(error.get("loc", ())))
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return f"{where}: unknown field; check its spelling against the API reference"
    if kind == "missing":
        return f"{where}: required field is missing"
    message = str(error.get("msg", "invalid value"))
    if "input" in error and kind not in ("model_attributes_type", "dict_type"):
        return f"{where}: {message}, got {error['input']!r}"
    return f"{where}: {message}"


async def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        position = detail.get("ctx", {}).get("error", "")
        return JSONResponse(
            {
                "code": "malformed_json",
                "message": f"the request body is not valid JSON: {position}",
            },
            status_code=400,
        )
    return JSONResponse(
        {
            "code": "invalid_request",
            "message": "; ".join(describe_validation_error(e) for e in errors),
        },
        status_code=422,
    )


async def _moorage(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MoorageError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return JSONResponse(
        {"code": exc.code, "message": exc.message}, status_code=exc.status_code, headers=headers
    )


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        {"code": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(MoorageError, _moorage)
    app.add_exception_handler(StarletteHTTPException, _http)
