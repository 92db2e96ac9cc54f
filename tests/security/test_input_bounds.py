"""Oversized and control-character input is refused at the API, naming the field, and
creates nothing.

A NUL in ``command`` or ``env`` used to be stored and then left the endpoint
``initializing`` forever with a traceback every second; a 10 MB env value was accepted.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.support.server import ApiClient, endpoint_body

# The gateway's limit on API bodies is raised here so oversized fields reach the
# API's own field bounds (a smaller gateway limit answers 413 first, which is fine too).
SERVER_ENV = {"MOORAGE_API_MAX_BODY_BYTES": str(32 * 1024 * 1024)}
MiB = 1024 * 1024


def _count(client: ApiClient) -> int:
    return int(client.call("GET", "/v1/inference-service").json()["total"])


def _refused(response: requests.Response, field: str) -> None:
    assert response.status_code in (400, 422), response.text[:500]
    error = response.json()
    assert set(error) == {"code", "message"}
    assert field in error["message"], error["message"][:500]
    # The refusal does not echo the oversized input back.
    assert len(response.content) < 16 * 1024


def _with(flavor_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    body = endpoint_body(flavor_id)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            for inner, inner_value in value.items():
                current = body[key].get(inner)
                if isinstance(inner_value, dict) and isinstance(current, dict):
                    body[key][inner] = {**current, **inner_value}
                else:
                    body[key][inner] = inner_value
        else:
            body[key] = value
    return body


OVERSIZED: list[tuple[str, dict[str, Any], str]] = [
    ("10 MB env value", {"deploy_metadata": {"env": {"BIG": "x" * (10 * MiB)}}}, "env.BIG"),
    ("4 MiB name", {"name": "n" * (4 * MiB)}, "name"),
    ("100 KiB command", {"deploy_metadata": {"command": "x" * (100 * 1024)}}, "command"),
    ("4 MiB description", {"description": "d" * (4 * MiB)}, "description"),
    ("long image", {"deploy_metadata": {"image_url": "i" * 5000}}, "image_url"),
    ("long flavor id", {"resource_metadata": {"flavor_id": "f" * 5000}}, "flavor_id"),
    (
        "300 env vars",
        {"deploy_metadata": {"env": {f"V{i}": "1" for i in range(300)}}},
        "deploy_metadata.env",
    ),
    (
        "env over 64 KiB in total",
        {"deploy_metadata": {"env": {f"V{i}": "x" * 60_000 for i in range(3)}}},
        "deploy_metadata.env",
    ),
    (
        "long probe path",
        {"deploy_metadata": {"readiness_probe": {"path": "/" + "p" * 5000}}},
        "readiness_probe.path",
    ),
]


@pytest.mark.parametrize(("changes", "field"), [pytest.param(c, f, id=i) for i, c, f in OVERSIZED])
def test_oversized_fields_are_refused(
    alice: ApiClient, bob: ApiClient, changes: dict[str, Any], field: str
) -> None:
    before = _count(alice)
    response = alice.call("POST", "/v1/inference-service", json=_with(alice.flavor_id(), changes))
    if response.status_code == 413:  # the gateway's body limit answered first
        assert response.json()["code"]
    else:
        _refused(response, field)
    assert _count(alice) == before
    assert bob.call("GET", "/v1/inference-service").status_code == 200


CONTROL: list[tuple[str, dict[str, Any], str]] = [
    ("NUL in command", {"deploy_metadata": {"command": "python3 app.py\x00x"}}, "command"),
    ("escape in command", {"deploy_metadata": {"command": "echo \x1b[31m"}}, "command"),
    ("CR in command", {"deploy_metadata": {"command": "echo a\rb"}}, "command"),
    ("NUL in env value", {"deploy_metadata": {"env": {"A": "x\x00y"}}}, "env.A"),
    ("newline in env value", {"deploy_metadata": {"env": {"A": "x\ny"}}}, "env.A"),
    ("NUL in env name", {"deploy_metadata": {"env": {"A\x00B": "x"}}}, "deploy_metadata.env"),
    ("NUL in name", {"name": "svc\x00"}, "name"),
    ("newline in name", {"name": "svc\nX-Injected: 1"}, "name"),
    ("C1 control in name", {"name": "s\x85vc"}, "name"),
    ("right-to-left override in name", {"name": "cost\u202e0001"}, "name"),
    ("line separator in name", {"name": "svc\u2028X"}, "name"),
    ("bidi isolate in description", {"description": "a\u2067b"}, "description"),
    ("bidi override in command", {"deploy_metadata": {"command": "echo \u202eok"}}, "command"),
    ("NUL in description", {"description": "a\x00b"}, "description"),
    ("NUL in image", {"deploy_metadata": {"image_url": "python:3.10\x00"}}, "image_url"),
    ("NUL in flavor id", {"resource_metadata": {"flavor_id": "abc\x00"}}, "flavor_id"),
    (
        "NUL in probe path",
        {"deploy_metadata": {"readiness_probe": {"path": "/ready\x00"}}},
        "readiness_probe.path",
    ),
]


@pytest.mark.parametrize(("changes", "field"), [pytest.param(c, f, id=i) for i, c, f in CONTROL])
def test_control_characters_are_refused_on_create(
    alice: ApiClient, changes: dict[str, Any], field: str
) -> None:
    before = _count(alice)
    response = alice.call("POST", "/v1/inference-service", json=_with(alice.flavor_id(), changes))
    _refused(response, field)
    assert "control or text-direction characters" in response.json()["message"] or field.endswith(
        "env"
    )
    assert _count(alice) == before


def test_control_characters_are_refused_on_update(alice: ApiClient) -> None:
    service_id = alice.create(name="bounded", deploy_metadata={"command": "sleep 600"})[
        "service_id"
    ]
    try:
        before = alice.get(service_id)
        for patch, field in [
            ({"deploy_metadata": {"command": "sleep 1\x00"}}, "command"),
            ({"deploy_metadata": {"env": {"A": "\x00"}}}, "env.A"),
            ({"name": "x\x00"}, "name"),
            ({"description": "x" * 5000}, "description"),
        ]:
            _refused(alice.call("PUT", f"/v1/inference-service/{service_id}", json=patch), field)
        after = alice.get(service_id)
        assert after["deploy_metadata"] == before["deploy_metadata"]
        assert after["name"] == before["name"]
        assert after["description"] == before["description"]
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_commands_may_span_lines_with_tabs(alice: ApiClient) -> None:
    """Shell scripts need newlines and tabs; only they are allowed, and only in command."""
    command = "set -e\n\tsleep 600\n"
    response = alice.call(
        "POST",
        "/v1/inference-service",
        json=endpoint_body(alice.flavor_id(), name="script", deploy_metadata={"command": command}),
    )
    assert response.status_code == 200, response.text
    service_id = response.json()["service_id"]
    try:
        assert response.json()["deploy_metadata"]["command"] == command.strip()
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/users", {"name": "eve\x00"}, "name"),
        ("/v1/users", {"name": "e" * 5000}, "name"),
        ("/v1/tokens", {"user_name": "admin", "name": "t\x00"}, "name"),
        ("/v1/tokens", {"user_id": "u" * 5000}, "user_id"),
    ],
)
def test_account_fields_are_bounded(
    admin: ApiClient, path: str, body: dict[str, Any], field: str
) -> None:
    users = admin.call("GET", "/v1/users").json()["user_list"]
    tokens = admin.call("GET", "/v1/tokens").json()["token_list"]
    _refused(admin.call("POST", path, json=body), field)
    assert admin.call("GET", "/v1/users").json()["user_list"] == users
    assert admin.call("GET", "/v1/tokens").json()["token_list"] == tokens
