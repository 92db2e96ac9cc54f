"""docs/api.md states gateway_metadata's defaults and bounds as the schema enforces them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from moorage.models.requests import GatewayMetadataIn

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SCHEMA = GatewayMetadataIn.model_json_schema()


def _documented() -> dict[str, tuple[str, str]]:
    """``field -> (default, allowed)`` from the doc's gateway_metadata table."""
    rows = {}
    for line in API_DOC.read_text().splitlines():
        match = re.match(r"\| `(\w+)` \| `([^`]*)` \| ([^|]+) \|", line)
        if match and match[1] in GatewayMetadataIn.model_fields:
            rows[match[1]] = (match[2], match[3].strip())
    return rows


def _allowed(prop: dict[str, Any]) -> str:
    """The schema's bounds as the doc writes them: ``[1, 100000]``, ``(0, 3600]``."""
    nullable = "anyOf" in prop
    if nullable:
        prop = next(p for p in prop["anyOf"] if p.get("type") != "null")
    if "$ref" in prop:
        enum = SCHEMA["$defs"][prop["$ref"].rsplit("/", 1)[1]]["enum"]
        text = ", ".join(f"`{name}`" for name in enum)
    else:
        # pydantic writes a validated number's bounds as ge/gt/le, others as minimum/...
        if "gt" in prop or "exclusiveMinimum" in prop:
            low = f"({prop.get('gt', prop.get('exclusiveMinimum')):g}"
        else:
            low = f"[{prop.get('ge', prop.get('minimum')):g}"
        text = f"{low}, {prop.get('le', prop.get('maximum')):g}]"
    return text + (" or `null`" if nullable else "")


@pytest.mark.parametrize("field", list(GatewayMetadataIn.model_fields))
def test_the_doc_gives_each_field_its_default_and_bounds(field: str) -> None:
    default = GatewayMetadataIn.model_fields[field].default
    expected_default = (
        "null"
        if default is None
        else f"{default:g}"
        if not isinstance(default, str)
        else str(default)
    )

    assert _documented().get(field) == (expected_default, _allowed(SCHEMA["properties"][field]))
