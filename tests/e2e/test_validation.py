"""Bad input gets a 4xx JSON error naming the field and what is allowed, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.server import ApiClient, endpoint_body

# (case id, body changes, expected status, text the message must contain)
CREATE_CASES: list[tuple[str, dict[str, Any], int, str]] = [
    (
        "unknown flavor",
        {"resource_metadata": {"flavor_id": "0" * 32}},
        400,
        "resource_metadata.flavor_id",
    ),
    (
        "negative instances",
        {"resource_metadata": {"target_instance_number": -1}},
        400,
        "resource_metadata.target_instance_number: must be between 1 and",
    ),
    (
        "zero instances",
        {"resource_metadata": {"target_instance_number": 0}},
        400,
        "resource_metadata.target_instance_number",
    ),
    (
        "too many instances",
        {"resource_metadata": {"target_instance_number": 100000}},
        400,
        "resource_metadata.target_instance_number: must be between 1 and",
    ),
    (
        "non-integer instances",
        {"resource_metadata": {"target_instance_number": "two"}},
        422,
        "resource_metadata.target_instance_number",
    ),
    (
        "fractional instances",
        {"resource_metadata": {"target_instance_number": 1.5}},
        422,
        "resource_metadata.target_instance_number",
    ),
    (
        "boolean instances",
        {"resource_metadata": {"target_instance_number": True}},
        422,
        "resource_metadata.target_instance_number",
    ),
    (
        "unknown scale type",
        {"resource_metadata": {"scale_type": "sometimes"}},
        422,
        "resource_metadata.scale_type",
    ),
    (
        "gpus above node_max_gpu",
        {"deploy_metadata": {"gpu_num": 1}},
        400,
        "deploy_metadata.gpu_num: must be at most 0",
    ),
    ("negative gpus", {"deploy_metadata": {"gpu_num": -1}}, 422, "deploy_metadata.gpu_num"),
    ("port zero", {"deploy_metadata": {"port": 0}}, 422, "deploy_metadata.port"),
    ("port too high", {"deploy_metadata": {"port": 65536}}, 422, "deploy_metadata.port"),
    ("port not a number", {"deploy_metadata": {"port": "http"}}, 422, "deploy_metadata.port"),
    ("empty command", {"deploy_metadata": {"command": ""}}, 422, "deploy_metadata.command"),
    ("blank command", {"deploy_metadata": {"command": "   "}}, 422, "deploy_metadata.command"),
    ("empty image", {"deploy_metadata": {"image_url": ""}}, 422, "deploy_metadata.image_url"),
    ("bad env name", {"deploy_metadata": {"env": {"1BAD": "x"}}}, 422, "deploy_metadata.env"),
    ("unknown currency", {"payment_type": "eur"}, 422, "payment_type"),
    ("empty name", {"name": ""}, 422, "name"),
    (
        "misspelled field",
        {"resource_metadata": {"target_instance_numbr": 2}},
        422,
        "resource_metadata.target_instance_numbr: unknown field",
    ),
]


def _count(client: ApiClient) -> int:
    return int(client.call("GET", "/v1/inference-service").json()["total"])


@pytest.mark.parametrize(
    ("changes", "status", "mentions"),
    [pytest.param(c, s, m, id=i) for i, c, s, m in CREATE_CASES],
)
def test_create_rejects_bad_input_and_creates_nothing(
    alice: ApiClient, changes: dict[str, Any], status: int, mentions: str
) -> None:
    before = _count(alice)
    response = alice.call(
        "POST", "/v1/inference-service", json=endpoint_body(alice.flavor_id(), **changes)
    )
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"code", "message"}
    assert mentions in error["message"]
    assert _count(alice) == before


def test_missing_section_is_named(alice: ApiClient) -> None:
    body = endpoint_body(alice.flavor_id())
    del body["deploy_metadata"]
    response = alice.call("POST", "/v1/inference-service", json=body)
    assert response.status_code == 422
    assert "deploy_metadata: required field is missing" in response.json()["message"]


def test_malformed_json_is_a_400(alice: ApiClient) -> None:
    before = _count(alice)
    response = alice.call(
        "POST",
        "/v1/inference-service",
        data='{"name": "x", ',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"
    assert _count(alice) == before


def test_a_reused_name_is_a_409_and_a_deleted_name_is_free(alice: ApiClient) -> None:
    first = alice.create(name="unique-name", deploy_metadata={"command": "sleep 60"})
    again = alice.call(
        "POST",
        "/v1/inference-service",
        json=endpoint_body(alice.flavor_id(), name="unique-name"),
    )
    assert again.status_code == 409
    assert again.json()["code"] == "name_in_use"
    assert "name" in again.json()["message"]
    alice.call("DELETE", f"/v1/inference-service/{first['service_id']}")
    reused = alice.create(name="unique-name", deploy_metadata={"command": "sleep 60"})
    alice.call("DELETE", f"/v1/inference-service/{reused['service_id']}")


@pytest.mark.parametrize(
    ("patch", "status", "mentions"),
    [
        pytest.param(
            {"resource_metadata": {"target_instance_number": "abc"}},
            422,
            "resource_metadata.target_instance_number",
            id="non-integer",
        ),
        pytest.param(
            {"resource_metadata": {"target_instance_number": "-3"}},
            400,
            "resource_metadata.target_instance_number",
            id="negative string",
        ),
        pytest.param(
            {"resource_metadata": {"target_instance_number": 100000}},
            400,
            "resource_metadata.target_instance_number",
            id="too many",
        ),
        pytest.param(
            {"resource_metadata": {"flavor_id": "f" * 32}},
            400,
            "resource_metadata.flavor_id",
            id="unknown flavor",
        ),
        pytest.param(
            {"deploy_metadata": {"port": 70000}}, 422, "deploy_metadata.port", id="bad port"
        ),
        pytest.param(
            {"deploy_metadata": {"gpu_num": 4}}, 400, "deploy_metadata.gpu_num", id="too many gpus"
        ),
        pytest.param({"nmae": "typo"}, 422, "nmae: unknown field", id="unknown field"),
    ],
)
def test_update_rejects_bad_input_and_changes_nothing(
    alice: ApiClient, patch: dict[str, Any], status: int, mentions: str
) -> None:
    endpoint = alice.create(
        name=f"patch-{status}-{len(mentions)}", deploy_metadata={"command": "sleep 60"}
    )
    service_id = endpoint["service_id"]
    try:
        before = alice.get(service_id)
        response = alice.call("PUT", f"/v1/inference-service/{service_id}", json=patch)
        assert response.status_code == status, response.text
        assert mentions in response.json()["message"]
        after = alice.get(service_id)
        for section in ("resource_metadata", "deploy_metadata", "updated_at", "name"):
            assert after[section] == before[section]
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_bad_page_size_names_the_parameter(alice: ApiClient) -> None:
    response = alice.call("GET", "/v1/inference-service", params={"page_size": 0})
    assert response.status_code == 400
    assert "page_size" in response.json()["message"]


def _volume_error(client: ApiClient, mount_path: str) -> str:
    body = endpoint_body(client.flavor_id(), name="volume-advice")
    body["deploy_metadata"]["volumes"] = [{"name": "weights", "mount_path": mount_path}]
    response = client.call("POST", "/v1/inference-service", json=body)
    assert response.status_code == 422, response.text
    return str(response.json()["message"])


def test_a_mount_path_error_quotes_the_value_once(alice: ApiClient) -> None:
    message = _volume_error(alice, "data")
    assert "deploy_metadata.volumes.0.mount_path" in message
    assert message.count("'data'") == 1, message
    assert message.count("got ") == 1, message


def test_a_reserved_mount_path_suggests_one_this_runtime_accepts(alice: ApiClient) -> None:
    message = _volume_error(alice, "/etc/foo")
    assert "must not be /etc" in message
    assert "/data" not in message, message
    suggested = "/mnt/weights"
    assert f"such as {suggested}" in message, message

    # The suggestion works: an endpoint with its volume there is created.
    endpoint = alice.create(
        name="volume-at-advice",
        deploy_metadata={
            "command": "sleep 60",
            "volumes": [{"name": "weights", "mount_path": suggested}],
        },
    )
    alice.call("DELETE", f"/v1/inference-service/{endpoint['service_id']}")
