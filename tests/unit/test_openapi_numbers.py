"""The OpenAPI document's numeric-string patterns match exactly the whole numbers in range."""

from __future__ import annotations

import random
import re

import pytest

from moorage.api.openapi import corrected, whole_numbers_pattern

RANGES = [(0, 10), (1, 100), (1, 65535), (0, 100_000), (16, 16 * 1024 * 1024), (1, 3600)]


@pytest.mark.parametrize(("low", "high"), [*RANGES, (0, None), (5, None), (1, 1)])
def test_pattern_matches_exactly_the_range(low: int, high: int | None) -> None:
    pattern = re.compile(f"^{whole_numbers_pattern(low, high)}$")
    top = 2 * (high or 100_000)
    rng = random.Random(low * 7919 + (high or 0))
    samples = [*range(min(top, 20_000)), *(rng.randrange(top) for _ in range(2000))]
    for n in samples:
        assert bool(pattern.match(str(n))) == (low <= n and (high is None or n <= high)), n
    for text in ("", "-1", "01", "1.5", " 1", "1e3", "+1"):
        assert not pattern.match(text), text


def test_numbers_in_request_bodies_become_number_or_numeric_string() -> None:
    document = {
        "paths": {
            "/x": {
                "post": {
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/In"}}
                        }
                    },
                    "responses": {"200": {}, "404": {"description": "gone"}},
                }
            }
        },
        "components": {
            "schemas": {
                "In": {
                    "properties": {
                        "port": {"type": "integer", "ge": 1, "le": 65535, "title": "Port"},
                        "delay": {"type": "number", "gt": 0, "le": 10},
                    }
                },
                "Out": {"properties": {"n": {"type": "integer", "ge": 0}}},
                "HTTPValidationError": {},
            }
        },
    }
    fixed = corrected(document)
    schemas = fixed["components"]["schemas"]
    port = schemas["In"]["properties"]["port"]
    assert port["title"] == "Port"
    assert port["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 65535}
    assert re.match(port["anyOf"][1]["pattern"], "443")
    delay = schemas["In"]["properties"]["delay"]["anyOf"][0]
    assert delay == {"type": "number", "exclusiveMinimum": 0, "maximum": 10}
    # Responses keep plain numbers, with real keywords.
    assert schemas["Out"]["properties"]["n"] == {"type": "integer", "minimum": 0}
    assert "HTTPValidationError" not in schemas
    error = fixed["paths"]["/x"]["post"]["responses"]["404"]["content"]
    assert error == {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
