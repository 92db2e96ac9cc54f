"""The OpenAPI document as the contract: what FastAPI generates, made exact.

Three things FastAPI's document gets wrong for moorage, fixed once here so every
route (and every field added later) is covered without per-route care:

- **Errors**: every 4xx/5xx answer is ``ErrorBody`` as JSON (``api/errors.py``),
  never FastAPI's own ``HTTPValidationError``, and never in a route's success
  media type (``/metrics`` and the logs answer text, their errors do not).
- **Bounds**: pydantic writes a bound behind a validator as ``ge``/``le``/``gt``/
  ``lt``, which JSON Schema ignores; they become ``minimum``/``maximum``/
  ``exclusiveMinimum``/``exclusiveMaximum``.
- **Numbers as strings**: request bodies accept a number or a numeric string
  (the reference's PUT sends ``"target_instance_number": "2"``), so each number
  in a request schema is ``anyOf: [number, string of digits]``, the string's
  ``pattern`` holding the same range, and a schema-driven client may send either.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

REF = "#/components/schemas/"
ERROR_SCHEMA = {"$ref": REF + "ErrorBody"}
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}
_NUMERIC = ("integer", "number")


def install(app: FastAPI) -> None:
    """Serves the corrected document at ``/openapi.json`` (built once, on first use)."""
    generate = app.openapi

    def contract() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = corrected(generate())
        return app.openapi_schema

    app.openapi = contract  # type: ignore[method-assign]


def corrected(document: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    for operation in _operations(document):
        for status, response in operation.get("responses", {}).items():
            if status[0] in "45":
                response["content"] = {"application/json": {"schema": dict(ERROR_SCHEMA)}}
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for name in _request_schemas(document, schemas):
        _walk(schemas[name], _numbers_or_numeric_strings)
    for schema in schemas.values():
        _walk(schema, _bounds_as_keywords)
    for operation in _operations(document):
        for parameter in operation.get("parameters", []):
            _walk(parameter.get("schema", {}), _bounds_as_keywords)
    return document


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in document.get("paths", {}).values() for op in path.values()]


def _request_schemas(document: dict[str, Any], schemas: dict[str, Any]) -> set[str]:
    """Names of the component schemas a request body reaches, directly or nested."""
    found: set[str] = set()
    pending = [
        media.get("schema", {})
        for op in _operations(document)
        for media in op.get("requestBody", {}).get("content", {}).values()
    ]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF):
                name = ref[len(REF) :]
                if name not in found and name in schemas:
                    found.add(name)
                    pending.append(schemas[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def _walk(node: Any, fix: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Applies ``fix`` to every schema object, children first."""
    if isinstance(node, list):
        node[:] = [_walk(item, fix) for item in node]
        return node
    if not isinstance(node, dict):
        return node
    for key, value in list(node.items()):
        if key in ("properties", "patternProperties", "$defs"):
            for name in value:
                value[name] = _walk(value[name], fix)
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            _walk(value, fix)
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            node[key] = _walk(value, fix)
    return fix(node)


def _bounds_as_keywords(node: dict[str, Any]) -> dict[str, Any]:
    for raw, keyword in _BOUNDS.items():
        if raw in node:
            node[keyword] = node.pop(raw)
    return node


def _numbers_or_numeric_strings(node: dict[str, Any]) -> dict[str, Any]:
    if node.get("type") not in _NUMERIC:
        return node
    number = _bounds_as_keywords(
        {k: v for k, v in node.items() if k not in ("title", "default", "description")}
    )
    low, high = _whole_range(number)
    text = {"type": "string", "pattern": "^" + whole_numbers_pattern(low, high) + "$"}
    kept = {k: v for k, v in node.items() if k in ("title", "default", "description")}
    return {**kept, "anyOf": [number, text]}


def _whole_range(number: dict[str, Any]) -> tuple[int | None, int | None]:
    """The whole numbers a numeric schema allows, as ``(lowest, highest)``."""
    low: int | None = None
    high: int | None = None
    if "minimum" in number:
        low = math.ceil(number["minimum"])
    if "exclusiveMinimum" in number:
        low = math.floor(number["exclusiveMinimum"]) + 1
    if "maximum" in number:
        high = math.floor(number["maximum"])
    if "exclusiveMaximum" in number:
        high = math.ceil(number["exclusiveMaximum"]) - 1
    return low, high


def whole_numbers_pattern(low: int | None, high: int | None) -> str:
    """A regular expression matching exactly the decimal integers in ``[low, high]``
    (``high`` open when ``None``), without leading zeros. A range reaching below
    zero (no field has one with bounds) is written as any integer."""
    if low is None or low < 0:
        return "(?:0|-?[1-9][0-9]*)"
    if high is None:
        digits = len(str(low))
        return f"(?:{_span(low, 10**digits - 1)}|[1-9][0-9]{{{digits},}})"
    if high < low:
        return "(?!)"
    return "(?:" + _span(low, high) + ")"


def _span(low: int, high: int) -> str:
    """Alternatives matching the integers ``low..high`` (``0 <= low <= high``)."""
    parts: list[str] = []
    for length in range(len(str(low)), len(str(high)) + 1):
        start = low if length == len(str(low)) else 10 ** (length - 1)
        end = high if length == len(str(high)) else 10**length - 1
        parts.extend(_same_length(str(start), str(end)))
    return "|".join(parts)


def _same_length(a: str, b: str) -> list[str]:
    if a == b:
        return [a]
    if a == "0" * len(a) and b == "9" * len(b):
        return [f"[0-9]{{{len(a)}}}" if len(a) > 1 else "[0-9]"]
    if len(a) == 1:
        return [f"[{a}-{b}]"]
    if a[0] == b[0]:
        return [a[0] + rest for rest in _group(_same_length(a[1:], b[1:]))]
    tail = len(a) - 1
    parts = [a[0] + rest for rest in _group(_same_length(a[1:], "9" * tail))]
    if int(b[0]) - int(a[0]) > 1:
        low, high = int(a[0]) + 1, int(b[0]) - 1
        digit = str(low) if low == high else f"[{low}-{high}]"
        parts.append(f"{digit}[0-9]{{{tail}}}")
    parts.extend(b[0] + rest for rest in _group(_same_length("0" * tail, b[1:])))
    return parts


def _group(alternatives: list[str]) -> list[str]:
    return alternatives if len(alternatives) == 1 else ["(?:" + "|".join(alternatives) + ")"]


def allowed_methods(document: dict[str, Any], path: str) -> list[str]:
    """The methods the document lists for ``path`` (plus HEAD with GET), for ``Allow``."""
    methods: set[str] = set()
    for template, operations in document.get("paths", {}).items():
        if _template(template).fullmatch(path):
            methods.update(m.upper() for m in operations)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


_TEMPLATES: dict[str, re.Pattern[str]] = {}


def _template(template: str) -> re.Pattern[str]:
    pattern = _TEMPLATES.get(template)
    if pattern is None:
        pattern = re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)))
        _TEMPLATES[template] = pattern
    return pattern
