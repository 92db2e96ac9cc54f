"""GPUs given one by one by a real ``moorage serve`` (process runtime), on four GPUs
of two models declared in a flavors file: what a user sees through the API and in
the replicas' own output."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.support.server import ApiClient, MoorageServer, wait_for

SERVER_ENV = {"MOORAGE_FLAVORS": str(Path(__file__).with_name("gpu_flavors.toml"))}
PRINTS_ITS_GPUS = 'echo "sees=$CUDA_VISIBLE_DEVICES"; exec python3 -m http.server $PORT'


def flavors(client: ApiClient) -> dict[str, dict[str, Any]]:
    listed = client.call("GET", "/v1/inference-service/flavor").json()["flavor_list"]
    return {f["display_name"]: f for f in listed}


def body(flavor_id: str, name: str, target: int) -> dict[str, Any]:
    return {
        "name": name,
        "description": "gpu",
        "payment_type": "usd",
        "resource_metadata": {
            "flavor_id": flavor_id,
            "scale_type": "manual",
            "target_instance_number": target,
        },
        "deploy_metadata": {
            "image_url": "local",
            "command": PRINTS_ITS_GPUS,
            "port": 8080,
            "gpu_num": 1,
        },
    }


def seen_gpus(client: ApiClient, service_id: str) -> list[str]:
    """The GPU UUIDs the endpoint's replicas printed, from their logs."""
    output = client.call("GET", f"/v1/inference-service/{service_id}/logs").text
    return sorted(re.findall(r"sees=(GPU-[\w-]+)", output))


def test_replicas_get_their_own_gpus_and_one_more_waits_for_capacity(
    server: MoorageServer, admin: ApiClient
) -> None:
    listed = flavors(admin)
    h100 = listed["NVIDIA_H100_80GB_HBM3"]
    assert (h100["available_num"], h100["node_max_gpu"]) == (2, 2)
    assert listed["NVIDIA_L4"]["available_num"] == 2

    too_many = admin.call("POST", "/v1/inference-service", json=body(h100["flavor_id"], "x", 3))
    assert too_many.status_code == 400, too_many.text
    assert "has 2 GPUs" in too_many.text
    assert "3 would need 3" in too_many.text

    first = admin.call("POST", "/v1/inference-service", json=body(h100["flavor_id"], "a", 2))
    assert first.status_code == 200, first.text
    first_id = first.json()["service_id"]
    admin.wait_status(first_id, "available")
    assert wait_for(lambda: seen_gpus(admin, first_id) == ["GPU-h100-0", "GPU-h100-1"])

    second = admin.call("POST", "/v1/inference-service", json=body(h100["flavor_id"], "b", 1))
    assert second.status_code == 200, second.text
    second_id = second.json()["service_id"]
    waiting = wait_for(
        lambda: (admin.get(second_id).get("status_info") or "").startswith(
            "waiting for capacity: 0 of 1 replicas placed"
        ),
        what="the second endpoint waiting for a GPU",
    )
    assert waiting
    assert flavors(admin)["NVIDIA_H100_80GB_HBM3"]["available_num"] == 0

    deleted = admin.call("DELETE", f"/v1/inference-service/{first_id}")
    assert deleted.status_code == 200, deleted.text
    admin.wait_status(second_id, "available")
    assert len(wait_for(lambda: seen_gpus(admin, second_id))) == 1
    admin.call("DELETE", f"/v1/inference-service/{second_id}")
    wait_for(
        lambda: flavors(admin)["NVIDIA_H100_80GB_HBM3"]["available_num"] == 2,
        what="both GPUs free again",
    )


def test_a_normal_users_sandboxed_replica_gets_its_own_gpu(
    server: MoorageServer, alice: ApiClient
) -> None:
    """On the process runtime a normal user's replica runs in the sandbox and is given
    its GPU there as the admin's is: by UUID, counted off available_num (declared GPUs
    have no device file here, so none is bound; bench/gpu_check.sh shows the files on
    a GPU host)."""
    h100 = flavors(alice)["NVIDIA_H100_80GB_HBM3"]
    before = h100["available_num"]

    response = alice.call("POST", "/v1/inference-service", json=body(h100["flavor_id"], "m", 1))
    assert response.status_code == 200, response.text
    service_id = response.json()["service_id"]
    try:
        alice.wait_status(service_id, "available")
        seen = wait_for(lambda: seen_gpus(alice, service_id))
        assert len(seen) == 1, seen
        assert seen[0].startswith("GPU-h100-"), seen
        assert flavors(alice)["NVIDIA_H100_80GB_HBM3"]["available_num"] == before - 1
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")
    wait_for(
        lambda: flavors(alice)["NVIDIA_H100_80GB_HBM3"]["available_num"] == before,
        what="the GPU free again",
    )
