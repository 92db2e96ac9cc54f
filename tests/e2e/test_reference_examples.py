"""The reference page's ``requests`` examples, pasted with only the URL and token changed,
against a moorage serving the reference's own flavors (examples/flavors.toml)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import database
from tests.support.server import MoorageServer, wait_for

REPO = Path(__file__).resolve().parents[2]
FLAVOR_KEYS = {
    "flavor_id",
    "display_name",
    "cluster_id",
    "cluster_flavor_id",
    "meta_info",
    "billing",
    "created_at",
    "updated_at",
    "deleted_at",
    "is_deleted",
    "available_num",
    "node_max_gpu",
}
SERVICE_KEYS = {
    "service_id",
    "name",
    "description",
    "user_id",
    "status",
    "status_info",
    "resource_metadata",
    "billing_metadata",
    "endpoint_metadata",
    "deploy_metadata",
    "service_type",
    "created_at",
    "updated_at",
    "deleted_at",
    "is_deleted",
    "payment_type",
}
RESOURCE_KEYS = {
    "resource_display_name",
    "scale_type",
    "flavor_id",
    "target_instance_number",
    "scale_policy",
    "VRAM",
    "image_size",
}


@pytest.fixture(scope="module")
def reference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MoorageServer]:
    home = tmp_path_factory.mktemp("reference")
    # The example's command runs pip and apt; on this host they must not touch the
    # system, so the replica's PATH finds stand-ins that fail the way an offline
    # machine would.
    shims = home / "shims"
    shims.mkdir()
    for tool in ("pip", "apt", "curl"):
        (shims / tool).write_text(f"#!/bin/sh\necho '{tool}: no network here' >&2\nexit 1\n")
        (shims / tool).chmod(0o755)
    env = {
        "MOORAGE_FLAVORS": str(REPO / "examples" / "flavors.toml"),
        "PATH": f"{shims}:{os.environ['PATH']}",
    }
    with database("sqlite", home) as url:
        server = MoorageServer(home=home, database_url=url, extra_env=env).start()
        try:
            yield server
        finally:
            server.stop()


def test_reference_examples_work_unchanged(reference_server: MoorageServer) -> None:
    base = reference_server.url
    api_token = reference_server.admin_token

    # -- Get inference flavor -------------------------------------------------
    url = f"{base}/v1/inference-service/flavor"

    payload: Any = {}
    headers = {"Authorization": f"Bearer {api_token}"}

    response = requests.request("GET", url, headers=headers, data=payload)
    flavors = response.json()["flavor_list"]
    assert response.status_code == 200
    assert {f["flavor_id"] for f in flavors} >= {
        "69475e82e81c4dd6be3467e2ca374e0c",
        "7b2f36d30e0743debc6c60d5017e2d16",
    }
    assert all(set(f) == FLAVOR_KEYS for f in flavors)
    reference_flavor = next(f for f in flavors if f["flavor_id"].startswith("69475e82"))
    assert reference_flavor["billing"] == {
        "cny_price_unit": 2.2,
        "usd_price_unit": 0.3,
        "nmt_price_unit": 0.147164,
    }
    assert reference_flavor["meta_info"] == {"cuda": "12.0", "region": "cn"}
    available_before = reference_flavor["available_num"]

    # -- Create endpoint --------------------------------------------------------
    url = f"{base}/v1/inference-service"

    payload = json.dumps(
        {
            "name": "test-flask-server-9",
            "description": "test password-1",
            "payment_type": "usd",
            "resource_metadata": {
                "flavor_id": "69475e82e81c4dd6be3467e2ca374e0c",
                "scale_type": "manual",
                "target_instance_number": 1,
            },
            "deploy_metadata": {
                "image_url": "python:3.10-slim",
                "command": "pip install flask && apt update && apt install -y curl && curl -O https://raw.githubusercontent.com/huang-hf/share_data/refs/heads/main/app.py && python app.py",  # noqa: E501
                "port": 8080,
                "gpu_num": 0,
            },
        }
    )
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_token}"}

    response = requests.request("POST", url, headers=headers, data=payload)
    created = response.json()
    assert response.status_code == 200, response.text
    # Every field of the reference, plus moorage's gateway settings.
    assert set(created) - SERVICE_KEYS == {"gateway_metadata"}
    assert set(created) >= SERVICE_KEYS
    assert set(created["resource_metadata"]) == RESOURCE_KEYS
    assert created["status"] == "initializing"
    assert created["status_info"] is None
    assert created["service_type"] == "normal"
    assert created["is_deleted"] is False
    assert created["payment_type"] == "usd"
    assert created["resource_metadata"]["resource_display_name"] == "NVIDIA_GeForce_RTX_4090"
    assert created["billing_metadata"]["price_per_instance_hour"] == 0.3
    inference_id = created["service_id"]

    # -- Get endpoint -----------------------------------------------------------
    url = f"{base}/v1/inference-service/{inference_id}"

    payload = {}
    headers = {"Authorization": f"Bearer {api_token}"}

    response = requests.request("GET", url, headers=headers, data=payload)
    assert response.status_code == 200
    assert response.json()["name"] == "test-flask-server-9"

    # Offline, the example's command fails at its first step: the endpoint must
    # say so in words, with the command's own output.
    def unavailable() -> dict[str, object] | None:
        got = dict(requests.request("GET", url, headers=headers, data=payload).json())
        return got if got["status"] == "unavailable" else None

    failed = wait_for(unavailable, timeout=60, what="status unavailable")
    assert "exited with code 1" in failed["status_info"]
    assert "pip: no network here" in failed["status_info"]

    # -- Update endpoint --------------------------------------------------------
    url = f"{base}/v1/inference-service/{inference_id}"

    payload = json.dumps({"resource_metadata": {"target_instance_number": "2"}})
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_token}"}

    response = requests.request("PUT", url, headers=headers, data=payload)
    assert response.status_code == 200, response.text
    assert response.json()["resource_metadata"]["target_instance_number"] == 2
    flavors = requests.get(f"{base}/v1/inference-service/flavor", headers=headers).json()
    now_available = next(
        f["available_num"] for f in flavors["flavor_list"] if f["flavor_id"].startswith("69475e82")
    )
    assert now_available == available_before - 2

    # -- Delete endpoint --------------------------------------------------------
    url = f"{base}/v1/inference-service/{inference_id}"

    payload = {}
    headers = {"Authorization": f"Bearer {api_token}"}

    response = requests.request("DELETE", url, headers=headers, data=payload)
    assert response.status_code == 200
    assert response.json()["is_deleted"] is True
    assert requests.get(url, headers=headers).status_code == 404
