"""Inputs that would choose a replica's GPUs, or that carry a secret, against a real
``moorage serve``: refused with the field named, and never echoed back.

- ``NVIDIA_VISIBLE_DEVICES=all`` in a container's environment makes the NVIDIA
  container runtime hand it every GPU of the host, whatever moorage allocated: no
  ``env`` name or secret name may set a GPU-selecting variable.
- An error about a secret's value or a registry password says what is wrong, never
  what was sent.
- A registry's port is a TCP port.
"""

from __future__ import annotations

import secrets

import pytest

from tests.support.server import ApiClient

STORES = ["sqlite"]


@pytest.mark.parametrize(
    "name", ["NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "CUDA_VISIBLE_DEVICES"]
)
def test_no_env_name_chooses_the_replicas_gpus(alice: ApiClient, name: str) -> None:
    before = alice.call("GET", "/v1/inference-service").json()["total"]
    response = alice.call(
        "POST",
        "/v1/inference-service",
        json={
            "name": "gpu-grab",
            "resource_metadata": {"flavor_id": alice.flavor_id()},
            "deploy_metadata": {
                "image_url": "python:3.10-slim",
                "command": "sleep 1000",
                "port": 8080,
                "env": {name: "all"},
            },
        },
    )
    assert response.status_code in (400, 422), response.text
    message = response.json()["message"]
    assert message.startswith("deploy_metadata.env"), message
    assert "set by moorage alone" in message, message
    assert "gpu_num" in message, message
    assert alice.call("GET", "/v1/inference-service").json()["total"] == before


def test_no_secret_is_named_like_a_gpu_selecting_variable(alice: ApiClient) -> None:
    response = alice.call("PUT", "/v1/secrets/NVIDIA_VISIBLE_DEVICES", json={"value": "all"})
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("name: NVIDIA_VISIBLE_DEVICES is set by moorage")
    names = [s["name"] for s in alice.call("GET", "/v1/secrets").json()["secret_list"]]
    assert "NVIDIA_VISIBLE_DEVICES" not in names


def test_an_error_about_a_secret_value_never_quotes_it(alice: ApiClient) -> None:
    value = "hf_" + secrets.token_hex(20_001)  # past the 32 KiB a secret may hold
    response = alice.call("PUT", "/v1/secrets/HF_TOKEN", json={"value": value})
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("value: "), response.text
    assert value[:12] not in response.text
    assert value[3:15] not in response.text


def test_an_error_about_a_registry_password_never_quotes_it(alice: ApiClient) -> None:
    password = "pw-" + secrets.token_hex(3000)  # past the 4096 characters allowed
    response = alice.call(
        "PUT",
        "/v1/registry-credentials/registry.example.com",
        json={"username": "alice", "password": password},
    )
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("password: "), response.text
    assert password[:12] not in response.text
    assert password[3:15] not in response.text


@pytest.mark.parametrize("registry", ["registry.example.com:70000", "registry.example.com:0"])
def test_a_registry_port_is_a_tcp_port(alice: ApiClient, registry: str) -> None:
    response = alice.call(
        "PUT",
        f"/v1/registry-credentials/{registry}",
        json={"username": "alice", "password": "pw"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("registry: must be a registry host")
    listed = alice.call("GET", "/v1/registry-credentials").json()["registry_credential_list"]
    assert registry not in [c["registry"] for c in listed]


def test_an_error_about_a_registry_username_never_quotes_it(alice: ApiClient) -> None:
    username = "robot-" + secrets.token_hex(8) + "\u0000"
    response = alice.call(
        "PUT",
        "/v1/registry-credentials/registry.example.com",
        json={"username": username, "password": "pw"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("username: "), response.text
    assert username[:14] not in response.text


@pytest.mark.parametrize("image_url", ["../../containers", "../../images", "/x/json"])
def test_an_image_url_that_walks_the_engines_api_is_refused(
    alice: ApiClient, image_url: str
) -> None:
    """The docker runtime puts image_url into the engine's API paths: a path there would
    make moorage read other tenants' containers for the caller."""
    before = alice.call("GET", "/v1/inference-service").json()["total"]
    response = alice.call(
        "POST",
        "/v1/inference-service",
        json={
            "name": "walk",
            "resource_metadata": {"flavor_id": alice.flavor_id()},
            "deploy_metadata": {"image_url": image_url, "command": "sleep 1000", "port": 8080},
        },
    )
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith("deploy_metadata.image_url: "), message
    assert "must be an image reference" in message
    assert alice.call("GET", "/v1/inference-service").json()["total"] == before
