"""A declared GPU's ``memory_mib`` shows as VRAM, as NVML-discovered memory does
(whole GiB, rounded: 23034 MiB is ``22GB``), on a real ``moorage serve``: in the
flavor list (``meta_info.vram``) and in an endpoint's ``resource_metadata.VRAM``. A
flavor whose GPUs declare no memory shows none, never ``0GB``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.server import ApiClient

STORES = ["sqlite"]  # what is checked is the flavors file as the API shows it
SERVER_ENV = {"MOORAGE_FLAVORS": str(Path(__file__).with_name("gpu_vram_flavors.toml"))}


def _flavors(client: ApiClient) -> dict[str, dict[str, Any]]:
    listed = client.call("GET", "/v1/inference-service/flavor").json()["flavor_list"]
    return {f["display_name"]: f for f in listed}


def _endpoint_vram(client: ApiClient, flavor_id: str, name: str) -> Any:
    created = client.call(
        "POST",
        "/v1/inference-service",
        json={
            "name": name,
            "payment_type": "usd",
            "resource_metadata": {"flavor_id": flavor_id, "target_instance_number": 1},
            "deploy_metadata": {
                "image_url": "local",
                "command": "sleep 60",
                "port": 8080,
                "gpu_num": 1,
            },
        },
    )
    assert created.status_code == 200, created.text
    service_id = created.json()["service_id"]
    try:
        assert (
            created.json()["resource_metadata"]["VRAM"]
            == client.get(service_id)["resource_metadata"]["VRAM"]
        )
        return created.json()["resource_metadata"]["VRAM"]
    finally:
        client.call("DELETE", f"/v1/inference-service/{service_id}")


def test_declared_memory_shows_as_vram(admin: ApiClient) -> None:
    l4 = _flavors(admin)["NVIDIA_L4"]
    assert l4["meta_info"].get("vram") == "22GB", l4
    assert _endpoint_vram(admin, l4["flavor_id"], "vram-l4") == "22GB"


def test_gpus_without_declared_memory_show_no_vram(admin: ApiClient) -> None:
    unsized = _flavors(admin)["UNSIZED"]
    assert "vram" not in unsized["meta_info"], unsized
    assert _endpoint_vram(admin, unsized["flavor_id"], "vram-unsized") is None
