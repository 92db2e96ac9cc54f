"""A user's secrets reach their replicas and nowhere else.

alice and bob each store a secret named HF_TOKEN (``PUT /v1/secrets/HF_TOKEN``) and
run an endpoint naming it in ``deploy_metadata.secrets``. Each replica answers with
the value its environment holds: alice's gets alice's, bob's gets bob's. Meanwhile no
read a user or a local account can make shows a value: ``GET /v1/secrets``, the
endpoint, its events, the server's log, and every process's command line (``ps``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest

from tests.security.test_replica_secrets import TOKEN_APP, _command_lines
from tests.support.server import ApiClient, MoorageServer, inline_app_command

STORES = ["sqlite"]
RUNTIMES = ["process", "docker"]


@pytest.fixture(scope="module")
def running(alice: ApiClient, bob: ApiClient) -> Iterator[dict[str, tuple[ApiClient, str, str]]]:
    """who -> (client, endpoint id, the value of their HF_TOKEN secret)."""
    started: dict[str, tuple[ApiClient, str, str]] = {}
    try:
        for who, client in (("alice", alice), ("bob", bob)):
            value = f"hf_{who}_" + secrets.token_hex(16)
            stored = client.call("PUT", "/v1/secrets/HF_TOKEN", json={"value": value})
            assert stored.status_code == 200, stored.text
            created = client.create(
                name=f"{who}-secret",
                deploy_metadata={
                    "command": inline_app_command(TOKEN_APP),
                    "port": 8080,
                    "secrets": ["HF_TOKEN"],
                },
            )
            started[who] = (client, str(created["service_id"]), value)
        for client, service_id, _ in started.values():
            client.wait_status(service_id, "available", timeout=120)
        yield started
    finally:
        for client, service_id, _ in started.values():
            client.call("DELETE", f"/v1/inference-service/{service_id}")
            client.call("DELETE", "/v1/secrets/HF_TOKEN")


def test_each_replica_gets_its_owners_secret(
    running: dict[str, tuple[ApiClient, str, str]],
) -> None:
    for who, (client, service_id, value) in running.items():
        answer = client.gateway(service_id)
        assert answer.status_code == 200, answer.text
        assert answer.text == value, f"{who}'s replica did not get {who}'s secret"


def test_no_read_shows_a_secrets_value(
    running: dict[str, tuple[ApiClient, str, str]], server: MoorageServer
) -> None:
    values = [value for _, _, value in running.values()]
    for client, service_id, _ in running.values():
        listed = client.call("GET", "/v1/secrets")
        assert listed.status_code == 200
        assert [s["name"] for s in listed.json()["secret_list"]] == ["HF_TOKEN"]
        endpoint = client.get(service_id)
        assert endpoint["deploy_metadata"]["secrets"] == ["HF_TOKEN"]
        events = client.call("GET", f"/v1/inference-service/{service_id}/events").text
        logs = client.call("GET", f"/v1/inference-service/{service_id}/logs").text
        for text in (listed.text, str(endpoint), events, logs):
            assert not any(v in text for v in values)
    assert not any(v in server.log() for v in values), "a secret is in moorage's log"
    leaked = [line for line in _command_lines().values() if any(v in line for v in values)]
    assert leaked == [], "a secret is on a command line every local user reads"


def test_an_unknown_secret_is_refused_by_name(alice: ApiClient) -> None:
    refused = alice.call(
        "POST",
        "/v1/inference-service",
        json={
            "name": "unknown-secret",
            "resource_metadata": {
                "flavor_id": alice.flavor_id(),
                "scale_type": "manual",
                "target_instance_number": 1,
            },
            "deploy_metadata": {
                "image_url": "local",
                "command": "true",
                "port": 8080,
                "secrets": ["NOT_STORED"],
            },
        },
    )
    assert refused.status_code == 400, refused.text
    assert "NOT_STORED" in refused.text
    assert "deploy_metadata.secrets" in refused.text


def test_a_changed_secret_reaches_the_replicas_started_after(
    running: dict[str, tuple[ApiClient, str, str]],
) -> None:
    client, service_id, old = running["alice"]
    new = old + "-rotated"
    assert client.call("PUT", "/v1/secrets/HF_TOKEN", json={"value": new}).status_code == 200
    assert client.gateway(service_id).text == old, "a running replica keeps what it started with"

    assert client.call("POST", f"/v1/inference-service/{service_id}/stop").status_code == 200
    client.wait_status(service_id, "stopped", timeout=60)
    assert client.call("POST", f"/v1/inference-service/{service_id}/start").status_code == 200
    client.wait_status(service_id, "available", timeout=120)
    deadline = time.monotonic() + 30
    while client.gateway(service_id).text != new and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.gateway(service_id).text == new


def test_secret_names_values_and_deletes_are_checked(alice: ApiClient, bob: ApiClient) -> None:
    bad_name = alice.call("PUT", "/v1/secrets/1-not-a-name", json={"value": "x"})
    assert bad_name.status_code == 400, bad_name.text
    assert bad_name.json()["message"].startswith("name: ")
    too_big = alice.call("PUT", "/v1/secrets/BIG", json={"value": "x" * 40_000})
    assert too_big.status_code == 422, too_big.text
    assert "x" * 100 not in too_big.text
    assert alice.call("PUT", "/v1/secrets/ONLY_ALICE", json={"value": "v"}).status_code == 200
    try:
        assert bob.call("DELETE", "/v1/secrets/ONLY_ALICE").status_code == 404
        names = [s["name"] for s in bob.call("GET", "/v1/secrets").json()["secret_list"]]
        assert "ONLY_ALICE" not in names
    finally:
        assert alice.call("DELETE", "/v1/secrets/ONLY_ALICE").status_code == 200
