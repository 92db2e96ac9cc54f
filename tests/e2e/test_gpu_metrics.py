"""GPU use per replica on a real ``moorage serve``'s ``/metrics``: two H100s that a
stand-in ``pynvml`` (tests/support/fake_pynvml, first on the server's PYTHONPATH;
nothing in moorage can be told to use it) reports with readings, and an L4 only the
flavors file declares. A ``gpu_num: 1`` replica's GPU carries its endpoint and
replica ids; the admin token reads it, a user's is refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import ApiClient, MoorageServer, wait_for

HERE = Path(__file__).parent
SERVER_ENV = {
    "MOORAGE_FLAVORS": str(HERE / "gpu_metrics_flavors.toml"),
    "MOORAGE_GPU_METRICS_INTERVAL_S": "1",
    "PYTHONPATH": str(HERE.parent / "support" / "fake_pynvml"),
    "FAKE_PYNVML_GPUS": str(HERE / "gpu_metrics_nvml.json"),
}
PRINTS_ITS_GPUS = 'echo "sees=$CUDA_VISIBLE_DEVICES"; exec python3 -m http.server $PORT'
H100 = "NVIDIA H100 80GB HBM3"

Gauges = dict[tuple[str, str], dict[str, Any]]


def gpu_gauges(client: ApiClient) -> Gauges:
    """By (metric, GPU UUID), the labels and value of each ``moorage_gpu_*`` sample."""
    response = client.call("GET", "/metrics")
    assert response.status_code == 200, response.text
    found: Gauges = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.startswith("moorage_gpu_"):
                found[(sample.name, sample.labels["gpu_uuid"])] = {
                    **sample.labels,
                    "value": sample.value,
                }
    return found


def seen_gpus(client: ApiClient, service_id: str) -> list[str]:
    """The GPU UUIDs the endpoint's replica printed, from its logs."""
    output = client.call("GET", f"/v1/inference-service/{service_id}/logs").text
    return re.findall(r"sees=(GPU-[\w-]+)", output)


def create(admin: ApiClient, flavor_id: str) -> str:
    body = {
        "name": "gpu-metrics",
        "description": "gpu",
        "payment_type": "usd",
        "resource_metadata": {
            "flavor_id": flavor_id,
            "scale_type": "manual",
            "target_instance_number": 1,
        },
        "deploy_metadata": {
            "image_url": "local",
            "command": PRINTS_ITS_GPUS,
            "port": 8080,
            "gpu_num": 1,
        },
    }
    created = admin.call("POST", "/v1/inference-service", json=body)
    assert created.status_code == 200, created.text
    return str(created.json()["service_id"])


def test_metrics_show_each_gpu_with_the_replica_holding_it(
    server: MoorageServer, admin: ApiClient, alice: ApiClient
) -> None:
    listed = admin.call("GET", "/v1/inference-service/flavor").json()["flavor_list"]
    h100 = next(f for f in listed if f["display_name"] == "NVIDIA_H100_80GB_HBM3")
    assert h100["available_num"] == 2  # discovered through the stand-in NVML

    wait_for(
        lambda: ("moorage_gpu_utilization_ratio", "GPU-h100-0") in gpu_gauges(admin),
        what="the first GPU readings",
    )

    service_id = create(admin, h100["flavor_id"])
    try:
        admin.wait_status(service_id, "available")
        replica_id = admin.get(service_id)["endpoint_metadata"]["replicas"][0]["replica_id"]
        held = wait_for(lambda: seen_gpus(admin, service_id), what="the GPU it sees")[0]
        free = ({"GPU-h100-0", "GPU-h100-1"} - {held}).pop()

        def holder_shown() -> Gauges | None:
            gauges = gpu_gauges(admin)
            return gauges if gauges[("moorage_gpu_allocated", held)]["value"] == 1 else None

        gauges = wait_for(holder_shown, what=f"{held} shown held on /metrics")
        mine = {"gpu_uuid": held, "gpu_model": H100}
        mine |= {"service_id": service_id, "replica_id": replica_id}
        expected = {
            "moorage_gpu_allocated": 1.0,
            "moorage_gpu_utilization_ratio": 0.73,
            "moorage_gpu_memory_used_bytes": 42949672960.0,
            "moorage_gpu_memory_total_bytes": 85520809984.0,
            "moorage_gpu_temperature_celsius": 61.0,
            "moorage_gpu_power_watts": 412.5,
        }
        for name, value in expected.items():
            assert gauges[(name, held)] == {**mine, "value": value}, name
        nobody = {"gpu_uuid": free, "gpu_model": H100, "service_id": "", "replica_id": ""}
        assert gauges[("moorage_gpu_allocated", free)] == {**nobody, "value": 0.0}
        # Declared, not seen by NVML: whether it is held, and no reading.
        assert gauges[("moorage_gpu_allocated", "GPU-l4-0")]["value"] == 0.0
        assert [name for name, uuid in gauges if uuid == "GPU-l4-0"] == ["moorage_gpu_allocated"]

        refused = alice.call("GET", "/metrics")
        assert refused.status_code == 403
        assert refused.json()["message"] == "reading metrics needs the admin token"
        assert "moorage_gpu_" not in refused.text
    finally:
        admin.call("DELETE", f"/v1/inference-service/{service_id}")
    wait_for(
        lambda: gpu_gauges(admin)[("moorage_gpu_allocated", held)]["value"] == 0,
        what=f"{held} free again on /metrics",
    )
