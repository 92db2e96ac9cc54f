"""An endpoint's whole life through a real ``moorage serve``, as a user drives it with
``requests``: create, wait for available, call through the gateway, scale with a
string "2", stop, start, delete, and no process left behind."""

from __future__ import annotations

import time

import requests

from tests.support.server import ApiClient, processes_with_env, wait_for

ENDPOINT_ENV = "MOORAGE_ENDPOINT_ID"
RUNTIMES = ["process", "docker", "ray"]


def _replicas_answering(client: ApiClient, service_id: str, calls: int) -> set[str]:
    seen = set()
    for _ in range(calls):
        response = client.gateway(service_id)
        assert response.status_code == 200, response.text
        seen.add(response.json()["replica"])
    return seen


def test_endpoint_lifecycle(alice: ApiClient) -> None:
    created = alice.create(name="lifecycle")
    service_id = created["service_id"]
    assert created["status"] == "initializing"
    assert len(service_id) == 32
    assert set(service_id) <= set("0123456789abcdef")
    assert created["resource_metadata"]["target_instance_number"] == 1
    assert created["endpoint_metadata"]["endpoint_url"].endswith(
        f"/inference-api/v1/inference_service/{service_id}"
    )

    available = alice.wait_status(service_id, "available")
    assert available["endpoint_metadata"]["ready_replicas"] == 1
    first = alice.gateway(service_id)
    assert first.status_code == 200
    assert first.json()["message"] == "hello from moorage"

    scaled = alice.call(
        "PUT",
        f"/v1/inference-service/{service_id}",
        json={"resource_metadata": {"target_instance_number": "2"}},
    )
    assert scaled.status_code == 200, scaled.text
    assert scaled.json()["resource_metadata"]["target_instance_number"] == 2
    assert scaled.json()["status"] == "initializing"
    wait_for(
        lambda: alice.get(service_id)["endpoint_metadata"]["ready_replicas"] == 2,
        what="two ready replicas",
        timeout=60,
    )
    assert alice.get(service_id)["status"] == "available"
    assert len(_replicas_answering(alice, service_id, 20)) == 2
    assert len(processes_with_env(ENDPOINT_ENV, service_id)) >= 2

    stopped = alice.call("POST", f"/v1/inference-service/{service_id}/stop")
    assert stopped.json()["status"] == "stopped"
    wait_for(lambda: not processes_with_env(ENDPOINT_ENV, service_id), what="replicas to stop")
    closed = alice.gateway(service_id)
    assert closed.status_code == 503
    assert "/start" in closed.json()["message"]

    started = alice.call("POST", f"/v1/inference-service/{service_id}/start")
    assert started.json()["status"] == "initializing"
    alice.wait_status(service_id, "available")
    assert len(_replicas_answering(alice, service_id, 20)) == 2

    deleted = alice.call("DELETE", f"/v1/inference-service/{service_id}")
    assert deleted.status_code == 200
    assert deleted.json()["is_deleted"] is True
    assert deleted.json()["deleted_at"] is not None
    assert alice.call("GET", f"/v1/inference-service/{service_id}").status_code == 404
    # The gateway's route table follows within a reconcile pass.
    wait_for(lambda: alice.gateway(service_id).status_code == 404, timeout=5, what="gateway 404")
    wait_for(lambda: not processes_with_env(ENDPOINT_ENV, service_id), what="no process left")


def test_gateway_forwards_method_path_query_and_body_but_not_the_token(
    alice: ApiClient,
) -> None:
    service_id = alice.create(name="echo")["service_id"]
    alice.wait_status(service_id, "available")
    response = alice.gateway(
        service_id, "echo", method="POST", params={"x": "1"}, data=b'{"prompt": "hi"}'
    )
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["method"] == "POST"
    assert echoed["args"] == {"x": "1"}
    assert echoed["body"] == '{"prompt": "hi"}'
    assert echoed["authorization"] is None  # the moorage token never reaches the replica
    assert echoed["forwarded_for"] == "127.0.0.1"
    missing = alice.gateway(service_id, "no-such-route")
    assert missing.status_code == 404  # the replica's own answer, passed through
    alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_server_sent_events_arrive_one_by_one(alice: ApiClient) -> None:
    service_id = alice.create(name="sse")["service_id"]
    alice.wait_status(service_id, "available")
    arrivals: list[tuple[float, str]] = []
    started = time.monotonic()
    with requests.get(
        f"{alice.base}/inference-api/v1/inference_service/{service_id}/stream",
        params={"count": "3", "gap": "0.6"},
        headers=alice.headers,
        stream=True,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines(decode_unicode=True):
            if line:
                arrivals.append((time.monotonic() - started, line))
    assert [line for _, line in arrivals] == ["data: 0", "data: 1", "data: 2"]
    # Buffering would deliver all three together at the end (about 1.8 s in).
    assert arrivals[0][0] < arrivals[2][0] - 0.8
    alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_no_ready_replica_gives_a_clear_503(alice: ApiClient) -> None:
    service_id = alice.create(name="slow-start", deploy_metadata={"command": "sleep 60"})[
        "service_id"
    ]
    # Unknown ids answer 404 at once (no wait that would tell them from others' ids):
    # the endpoint is routed from the controller's next pass.
    response = wait_for(
        lambda: (r := alice.gateway(service_id)).status_code != 404 and [r],
        timeout=10,
        what="the new endpoint in the route table",
    )[0]
    assert response.status_code == 503
    assert response.json()["code"] == "no_ready_replica"
    assert "available" in response.json()["message"]
    assert response.headers["retry-after"]
    alice.call("DELETE", f"/v1/inference-service/{service_id}")
    wait_for(lambda: not processes_with_env(ENDPOINT_ENV, service_id), what="no process left")


def test_a_stopped_endpoint_says_how_to_start_it_and_asks_for_no_retry(
    alice: ApiClient,
) -> None:
    """A stopped endpoint does not come back by itself: a ``Retry-After`` would have
    clients retry for ever instead of starting it."""
    service_id = alice.create(name="stopped", deploy_metadata={"command": "sleep 60"})["service_id"]
    assert alice.call("POST", f"/v1/inference-service/{service_id}/stop").status_code == 200
    alice.wait_status(service_id, "stopped")
    response = wait_for(
        lambda: "stopped" in (r := alice.gateway(service_id)).text and [r],
        timeout=10,
        what="the stop in the route table",
    )[0]
    assert response.status_code == 503
    assert response.json()["code"] == "no_ready_replica"
    assert f"/v1/inference-service/{service_id}/start" in response.json()["message"]
    assert "retry-after" not in response.headers
    alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_list_shows_own_endpoints_paginated(alice: ApiClient) -> None:
    ids = [
        alice.create(name=f"list-{i}", deploy_metadata={"command": "sleep 60"})["service_id"]
        for i in range(3)
    ]
    first = alice.call("GET", "/v1/inference-service", params={"page": 1, "page_size": 2}).json()
    second = alice.call("GET", "/v1/inference-service", params={"page": 2, "page_size": 2}).json()
    assert first["total"] == second["total"] >= 3
    listed = [e["service_id"] for e in first["service_list"] + second["service_list"]]
    assert len(first["service_list"]) == 2
    assert listed[:3] == list(reversed(ids))  # newest first
    for service_id in ids:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")
