"""Gateway settings through the API and the gateway's metrics, against a real server.

The cap, the queue and its 429 are tested in process
(tests/integration/test_gateway_in_process.py)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from tests.support.metrics import metric
from tests.support.server import ApiClient, wait_for

# What this module checks is the gateway's admission queue, the same over either store.
STORES = ["sqlite"]


def test_gateway_settings_change_without_a_new_revision(alice: ApiClient) -> None:
    endpoint = alice.create(name="tunable", deploy_metadata={"command": "sleep 60"})
    service_id = endpoint["service_id"]
    changed = alice.call(
        "PUT",
        f"/v1/inference-service/{service_id}",
        json={"gateway_metadata": {"policy": "power_of_two", "max_concurrency": 4}},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["gateway_metadata"]["policy"] == "power_of_two"
    assert body["gateway_metadata"]["max_concurrency"] == 4
    assert body["gateway_metadata"]["max_queue"] == 100
    assert body["deploy_metadata"]["revision"] == 1
    uncapped = alice.call(
        "PUT",
        f"/v1/inference-service/{service_id}",
        json={"gateway_metadata": {"max_concurrency": None}},
    )
    assert uncapped.json()["gateway_metadata"]["max_concurrency"] is None
    assert uncapped.json()["gateway_metadata"]["policy"] == "power_of_two"
    bad = alice.call(
        "PUT",
        f"/v1/inference-service/{service_id}",
        json={"gateway_metadata": {"policy": "fastest"}},
    )
    assert bad.status_code == 422
    assert "gateway_metadata.policy" in bad.json()["message"]
    timed = alice.call(
        "PUT",
        f"/v1/inference-service/{service_id}",
        json={"gateway_metadata": {"idle_timeout_s": 3600, "request_timeout_s": 7200}},
    )
    assert timed.json()["gateway_metadata"]["idle_timeout_s"] == 3600
    assert timed.json()["gateway_metadata"]["request_timeout_s"] == 7200
    unlimited = alice.call(
        "PUT",
        f"/v1/inference-service/{service_id}",
        json={"gateway_metadata": {"request_timeout_s": None, "retries": 3}},
    )
    assert unlimited.json()["gateway_metadata"]["request_timeout_s"] is None
    assert unlimited.json()["gateway_metadata"]["retries"] == 3
    assert unlimited.json()["gateway_metadata"]["idle_timeout_s"] == 3600
    for field, value in (("retries", 11), ("idle_timeout_s", 0), ("request_timeout_s", -1)):
        refused = alice.call(
            "PUT",
            f"/v1/inference-service/{service_id}",
            json={"gateway_metadata": {field: value}},
        )
        assert refused.status_code == 422
        assert f"gateway_metadata.{field}" in refused.json()["message"]
    assert (
        alice.call("GET", f"/v1/inference-service/{service_id}").json()["gateway_metadata"][
            "retries"
        ]
        == 3
    )  # the refused changes changed nothing
    alice.call("DELETE", f"/v1/inference-service/{service_id}")
    wait_for(lambda: alice.call("GET", f"/v1/inference-service/{service_id}").status_code == 404)


def test_metrics_count_requests_latency_in_flight_and_refusals(
    alice: ApiClient, admin: ApiClient
) -> None:
    endpoint = alice.create(
        name="measured", gateway_metadata={"max_concurrency": 1, "max_queue": 0}
    )
    service_id = endpoint["service_id"]
    alice.wait_status(service_id, "available")
    for _ in range(5):
        assert alice.gateway(service_id).status_code == 200
    assert alice.gateway(service_id, "no-such-page").status_code == 404

    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(alice.gateway, service_id, "slow", params={"seconds": "1.5"})
        time.sleep(0.5)
        during = admin.call("GET", "/metrics").text
        refused = alice.gateway(service_id)  # the only slot is taken and there is no queue
        assert slow.result().status_code == 200
    assert refused.status_code == 429

    text = admin.call("GET", "/metrics").text
    assert metric(text, "moorage_gateway_requests_total", endpoint=service_id, code="200") >= 6
    assert metric(text, "moorage_gateway_requests_total", endpoint=service_id, code="404") == 1
    assert (
        metric(text, "moorage_gateway_errors_total", endpoint=service_id, reason="overloaded") == 1
    )
    assert metric(text, "moorage_gateway_request_duration_seconds_count", endpoint=service_id) >= 7
    assert metric(during, "moorage_gateway_in_flight", endpoint=service_id) == 1
    assert metric(text, "moorage_gateway_in_flight", endpoint=service_id) == 0
    assert alice.call("GET", "/metrics").status_code == 403
    alice.call("DELETE", f"/v1/inference-service/{service_id}")
