"""An endpoint's traffic as its owner reads it from a real ``moorage serve``
(``GET /v1/inference-service/{id}/traffic``): every request through the gateway
counted once, the replica's 500s as errors, a stream's latency up to its last event,
a standalone gateway's requests added from its reports, and nobody but the owner able
to read it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import requests

from tests.support.gateway import StandaloneGateway
from tests.support.server import ApiClient, MoorageServer, wait_for

# What is checked is the gateway's counting and the route's owner check; the store's
# part (standalone gateways' reports, on both stores) is tests/integration/test_traffic.py.
STORES = ["sqlite"]
OK, FAILED, MISSING = 4, 3, 2  # 200s, the replica's 500s, its 404s (not errors)
STREAM_S = 3 * 0.3  # three events, 0.3 s apart


def _traffic(client: ApiClient, service_id: str) -> requests.Response:
    return client.call("GET", f"/v1/inference-service/{service_id}/traffic")


def test_the_owner_sees_requests_responses_errors_and_latency(
    server: MoorageServer, alice: ApiClient, bob: ApiClient
) -> None:
    service_id = alice.create(name="traffic")["service_id"]
    alice.wait_status(service_id, "available")
    before = _traffic(alice, service_id)
    assert before.status_code == 200, before.text
    assert before.json()["requests_total"] == 0

    for _ in range(OK):
        assert alice.gateway(service_id).status_code == 200
    for _ in range(FAILED):
        assert alice.gateway(service_id, "status/500").status_code == 500
    for _ in range(MISSING):
        assert alice.gateway(service_id, "status/404").status_code == 404
    streamed = alice.gateway(service_id, "stream", params={"count": "3", "gap": "0.3"})
    assert streamed.status_code == 200
    assert streamed.text.count("data: ") == 3
    sent = OK + FAILED + MISSING + 1

    def counted() -> dict[str, Any] | None:
        body: dict[str, Any] = _traffic(alice, service_id).json()
        return body if body["responses_total"] == sent else None

    traffic = wait_for(counted, timeout=10, what=f"{sent} responses counted")
    assert set(traffic) == {
        "service_id",
        "time",
        "in_flight",
        "waiting",
        "requests_total",
        "responses_total",
        "errors_total",
        "latency_seconds_total",
    }
    assert traffic["service_id"] == service_id
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", traffic["time"])
    assert traffic["requests_total"] == sent
    assert traffic["errors_total"] == FAILED
    assert (traffic["in_flight"], traffic["waiting"]) == (0, 0)
    # The stream alone lasted STREAM_S: its latency runs to its last event.
    assert traffic["latency_seconds_total"] >= STREAM_S * 0.9, traffic

    # Another user's endpoint answers exactly as one that does not exist.
    missing_id = "0" * 32
    missing = _traffic(alice, missing_id)
    refused = _traffic(bob, service_id)
    assert (missing.status_code, refused.status_code) == (404, 404)
    assert refused.json() == {
        key: value.replace(missing_id, service_id) if isinstance(value, str) else value
        for key, value in missing.json().items()
    }
    anonymous = requests.get(f"{server.url}/v1/inference-service/{service_id}/traffic", timeout=30)
    assert anonymous.status_code == 401

    assert alice.call("DELETE", f"/v1/inference-service/{service_id}").status_code == 200
    assert _traffic(alice, service_id).status_code == 404


def test_a_standalone_gateways_requests_are_added_from_its_reports(
    server: MoorageServer, admin: ApiClient, alice: ApiClient, tmp_path: Path
) -> None:
    """``moorage gateway`` reports its counters with its demand every second: the owner
    sees its requests beside those through ``moorage serve``'s own port."""
    service_id = alice.create(name="traffic-standalone")["service_id"]
    alice.wait_status(service_id, "available")
    assert alice.gateway(service_id).status_code == 200  # one through moorage serve
    with StandaloneGateway(tmp_path, control_plane=server.url, token=admin.token) as gateway:
        url = gateway.url(service_id, "status/502")
        wait_for(
            lambda: requests.get(url, headers=alice.headers, timeout=10).status_code == 502,
            timeout=30,
            what="the standalone gateway's first route table",
        )  # the replica's 502 once the table came: earlier tries are its own 401s
        for _ in range(2):
            assert requests.get(url, headers=alice.headers, timeout=10).status_code == 502

        def reported() -> dict[str, Any] | None:
            body: dict[str, Any] = _traffic(alice, service_id).json()
            return body if body["errors_total"] == 3 else None

        traffic = wait_for(reported, timeout=15, what="the standalone gateway's report")
        assert traffic["responses_total"] == traffic["requests_total"] == 4
