"""Every time the API answers is ``YYYY-MM-DD HH:MM:SS`` in UTC, as docs/api.md says:
the secrets and registry-credentials routes (which once answered ISO 8601 with
microseconds and a ``Z``) as much as endpoints, events, flavors, users and tokens;
and the OpenAPI document says so wherever a time appears."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.server import ApiClient

DOCUMENTED = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
# Anything that looks like a time but is not in the documented format.
OTHER_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
TIME_FIELDS = {"created_at", "updated_at", "deleted_at", "revoked_at", "time", "since"}


def _times(body: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(where, value) of every time field and every string that looks like a time."""
    if isinstance(body, dict):
        for key, value in body.items():
            where = f"{path}.{key}"
            if key in TIME_FIELDS:
                yield where, value
            else:
                yield from _times(value, where)
    elif isinstance(body, list):
        for index, item in enumerate(body):
            yield from _times(item, f"{path}[{index}]")
    elif isinstance(body, str) and OTHER_TIME.search(body):
        yield path, body


def _check(response_json: Any, what: str) -> int:
    """Asserts every time in the body is documented and recent; returns how many."""
    found = [(where, value) for where, value in _times(response_json) if value is not None]
    now = datetime.now(UTC)
    for where, value in found:
        assert isinstance(value, str), (what, where, value)
        assert DOCUMENTED.match(value), (what, where, value)
        moment = datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        assert abs(now - moment) < timedelta(minutes=10), (what, where, value, "not UTC?")
    return len(found)


@pytest.fixture
def answers(admin: ApiClient, alice: ApiClient) -> Iterator[list[tuple[str, Any]]]:
    """The answers of every route that returns times, for a secret, a registry login
    and an endpoint of alice's."""
    made: list[tuple[str, Any]] = []

    def take(what: str, method: str, path: str, client: ApiClient, **kwargs: Any) -> None:
        response = client.call(method, path, **kwargs)
        assert response.status_code == 200, (what, response.text)
        made.append((what, response.json()))

    endpoint = alice.create(name="timestamps", deploy_metadata={"command": "sleep 60"})
    service_id = endpoint["service_id"]
    made.append(("POST /v1/inference-service", endpoint))
    try:
        take("PUT secret", "PUT", "/v1/secrets/HF_TOKEN", alice, json={"value": "x"})
        take("PUT secret again", "PUT", "/v1/secrets/HF_TOKEN", alice, json={"value": "y"})
        take("GET secrets", "GET", "/v1/secrets", alice)
        login = {"username": "me", "password": "pw"}
        registry = "/v1/registry-credentials/ghcr.io"
        take("PUT registry credential", "PUT", registry, alice, json=login)
        take("GET registry credentials", "GET", "/v1/registry-credentials", alice)
        take("GET endpoint", "GET", f"/v1/inference-service/{service_id}", alice)
        take("GET endpoints", "GET", "/v1/inference-service", alice)
        take("GET events", "GET", f"/v1/inference-service/{service_id}/events", alice)
        take("GET flavors", "GET", "/v1/inference-service/flavor", alice)
        take("GET users", "GET", "/v1/users", admin)
        take("GET tokens", "GET", "/v1/tokens", admin)
        take("DELETE registry credential", "DELETE", registry, alice)
        take("DELETE secret", "DELETE", "/v1/secrets/HF_TOKEN", alice)
        yield made
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")
        alice.call("DELETE", "/v1/secrets/HF_TOKEN")
        alice.call("DELETE", "/v1/registry-credentials/ghcr.io")


def test_every_time_answered_is_utc_in_the_documented_format(
    answers: list[tuple[str, Any]],
) -> None:
    counts = {what: _check(body, what) for what, body in answers}
    for what in (
        "PUT secret",
        "GET secrets",
        "PUT registry credential",
        "GET registry credentials",
        "DELETE secret",
        "DELETE registry credential",
        "GET endpoint",
        "GET events",
        "GET users",
        "GET tokens",
    ):
        assert counts[what] >= 1, (what, counts)


def test_the_openapi_document_says_the_format_of_every_time(admin: ApiClient) -> None:
    document = admin.call("GET", "/openapi.json").json()
    described = 0
    for name, schema in document["components"]["schemas"].items():
        for field, spec in schema.get("properties", {}).items():
            if field not in TIME_FIELDS:
                continue
            options = spec.get("anyOf", [spec])
            (text,) = [o for o in options if o.get("type") == "string"]
            assert text.get("pattern") == DOCUMENTED.pattern, (name, field, spec)
            assert "UTC" in text.get("description", "") + spec.get("description", ""), (
                name,
                field,
                spec,
            )
            described += 1
    for name in ("SecretOut", "RegistryCredentialOut"):
        assert "created_at" in document["components"]["schemas"][name]["properties"]
    assert described >= 10
