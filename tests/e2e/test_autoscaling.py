"""Automatic scaling against a real ``moorage serve``, its gateway and real replicas
of the fake LLM server (the process runtime), called as users call them (``requests``,
the ``openai`` package): what the API accepts, a load step that grows an endpoint and
its end that brings it back, and scale to zero with the first requests held through a
5 s cold start, none refused."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from openai import OpenAI

from moorage.fakellm.command import fake_llm_command
from tests.support.gateway import StandaloneGateway
from tests.support.server import ApiClient, MoorageServer, endpoint_body, wait_for

STORES = ["sqlite"]

BASE = "/v1/inference-service"


def _auto_body(
    alice: ApiClient, name: str, policy: dict[str, Any], **deploy: Any
) -> dict[str, Any]:

    return endpoint_body(
        alice.flavor_id(),
        name=name,
        resource_metadata={
            "scale_type": "auto",
            "target_instance_number": 1,
            "scale_policy": policy,
        },
        deploy_metadata=deploy,
    )


def _create(alice: ApiClient, body: dict[str, Any]) -> str:
    response = alice.call("POST", BASE, json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["service_id"])


def _delete(alice: ApiClient, service_id: str) -> None:
    alice.call("DELETE", f"{BASE}/{service_id}")


def _events(alice: ApiClient, service_id: str) -> list[str]:
    response = alice.call("GET", f"{BASE}/{service_id}/events", params={"page_size": 100})
    assert response.status_code == 200, response.text
    return [str(item["message"]) for item in response.json()["event_list"]]


def _count(alice: ApiClient, service_id: str) -> int:
    return int(alice.get(service_id)["resource_metadata"]["target_instance_number"])


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"min_instances": 3, "max_instances": 2}, "min_instances"),
        ({"metric": "gpu"}, "metric"),
        ({"target": 0}, "target"),
        ({"target": 5e-324}, "target"),
        ({"target": "1e400"}, "target"),
        ({"window_s": 1}, "window_s"),
        ({"max_instances": 0}, "max_instances"),
        ({"scale_down_delay_s": -1}, "scale_down_delay_s"),
        ({"panic": True}, "panic"),
    ],
)
def test_a_bad_scale_policy_is_refused_naming_the_field(
    alice: ApiClient, policy: dict[str, Any], field: str
) -> None:
    before = alice.call("GET", BASE).json()["total"]
    response = alice.call("POST", BASE, json=_auto_body(alice, "bad-policy", policy))
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert f"resource_metadata.scale_policy.{field}" in message or (
        "resource_metadata.scale_policy" in message and field in message
    ), message
    assert alice.call("GET", BASE).json()["total"] == before, "nothing was created"


def test_a_manual_endpoint_takes_no_scale_policy(alice: ApiClient) -> None:
    body = _auto_body(alice, "manual-policy", {"max_instances": 2})
    body["resource_metadata"]["scale_type"] = "manual"
    response = alice.call("POST", BASE, json=body)
    assert response.status_code == 422, response.text
    assert "scale_type" in response.json()["message"], response.text


@pytest.mark.parametrize(("most", "status"), [(5, 403), (9, 400)])
def test_more_replicas_than_the_quota_allows_are_refused(
    alice: ApiClient, most: int, status: int
) -> None:
    """The flavor holds 8 replicas, of which a user's quota allows half: the maximum
    counts, not the first count."""
    body = _auto_body(alice, "too-many", {"min_instances": 0, "max_instances": most})
    response = alice.call("POST", BASE, json=body)
    assert response.status_code == status, response.text
    message = response.json()["message"]
    assert ("quota exceeded" if status == 403 else "scale_policy.max_instances") in message


def test_put_switches_between_manual_and_auto(alice: ApiClient) -> None:
    service_id = alice.create(name="switching")["service_id"]
    try:
        url = f"{BASE}/{service_id}"
        to_auto = {
            "resource_metadata": {
                "scale_type": "auto",
                "scale_policy": {"min_instances": 1, "max_instances": 2, "target": 3},
            }
        }
        response = alice.call("PUT", url, json=to_auto)
        assert response.status_code == 200, response.text
        resource = alice.get(service_id)["resource_metadata"]
        assert resource["scale_type"] == "auto"
        assert resource["target_instance_number"] == 1
        assert resource["scale_policy"]["max_instances"] == 2
        assert resource["scale_policy"]["target"] == 3
        assert resource["scale_policy"]["metric"] == "concurrency"

        crossed = {"resource_metadata": {"scale_policy": {"min_instances": 3}}}
        refused = alice.call("PUT", url, json=crossed)
        assert refused.status_code == 400, refused.text
        assert "scale_policy.min_instances" in refused.json()["message"], refused.text

        by_hand = {"resource_metadata": {"target_instance_number": 2}}
        refused = alice.call("PUT", url, json=by_hand)
        assert refused.status_code == 400, refused.text
        message = refused.json()["message"]
        assert message.startswith("resource_metadata.target_instance_number"), message
        assert "scale_type" in message, message

        to_manual = {"resource_metadata": {"scale_type": "manual", "target_instance_number": 2}}
        response = alice.call("PUT", url, json=to_manual)
        assert response.status_code == 200, response.text
        resource = alice.get(service_id)["resource_metadata"]
        assert resource["scale_type"] == "manual"
        assert resource["scale_policy"] is None
        assert resource["target_instance_number"] == 2
    finally:
        _delete(alice, service_id)


@pytest.fixture
def load_step(alice: ApiClient) -> Iterator[str]:
    body = _auto_body(
        alice,
        "load-step",
        {
            "metric": "concurrency",
            "target": 1,
            "min_instances": 1,
            "max_instances": 3,
            "scale_down_delay_s": 4,
            "window_s": 4,
        },
        command=fake_llm_command(itl_ms=20),
        readiness_probe={"path": "/health", "period_s": 0.2},
    )
    service_id = _create(alice, body)
    try:
        yield service_id
    finally:
        _delete(alice, service_id)


def test_a_load_step_grows_the_endpoint_and_its_end_brings_it_back(
    alice: ApiClient, load_step: str
) -> None:
    service_id = load_step
    alice.wait_status(service_id, "available", timeout=60)
    stop = threading.Event()
    streams: list[str] = []
    failures: list[BaseException] = []

    def client() -> None:
        """Streams chat completions of about a second through the gateway, as an
        OpenAI client does, one after another."""
        openai = OpenAI(
            base_url=f"{alice.base}/inference-api/v1/inference_service/{service_id}/v1",
            api_key=alice.token,
            max_retries=0,
        )
        while not stop.is_set():
            try:
                chunks = openai.chat.completions.create(
                    model="fake-llm",
                    messages=[{"role": "user", "content": "tell me a story"}],
                    max_tokens=40,
                    stream=True,
                )
                streams.append("".join(c.choices[0].delta.content or "" for c in chunks))
            except Exception as exc:  # every failure is reported below
                failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_for(
            lambda: alice.get(service_id)["endpoint_metadata"]["ready_replicas"] == 3,
            timeout=60,
            what="three replicas ready under a concurrency of 3 at target 1",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures, failures[:3]
    assert streams, "no stream completed"
    assert all(text for text in streams), "every stream carried text"
    grew = [m for m in _events(alice, service_id) if m.startswith("autoscaled from 1")]
    assert grew, _events(alice, service_id)
    assert "concurrency" in grew[-1], grew

    wait_for(
        lambda: _count(alice, service_id) == 1,
        timeout=60,
        what="the count back at min_instances once the load ended",
    )
    shrank = [m for m in _events(alice, service_id) if m.endswith("1 to 3 replicas)")]
    assert shrank, "the scale-down names its policy's bounds"
    assert alice.get(service_id)["status"] == "available"


@pytest.fixture
def scales_to_zero(alice: ApiClient) -> Iterator[str]:
    body = _auto_body(
        alice,
        "to-zero",
        {"min_instances": 0, "max_instances": 1, "scale_down_delay_s": 3, "window_s": 2},
        command=fake_llm_command(startup_s=5),
        readiness_probe={"path": "/health", "period_s": 0.2},
    )
    service_id = _create(alice, body)
    try:
        yield service_id
    finally:
        _delete(alice, service_id)


def _at_zero(alice: ApiClient, service_id: str) -> bool:
    endpoint = alice.get(service_id)
    return (
        endpoint["resource_metadata"]["target_instance_number"] == 0
        and not endpoint["endpoint_metadata"]["replicas"]
    )


def _wait_at_zero(alice: ApiClient, service_id: str) -> None:
    wait_for(lambda: _at_zero(alice, service_id), timeout=90, what="the endpoint at zero")


def _assert_woken(alice: ApiClient, service_id: str) -> None:
    """Its events say the autoscaler took it from zero to one replica."""
    events = _events(alice, service_id)
    assert any(m.startswith("autoscaled from 0 to 1") for m in events), events


def test_an_idle_endpoint_goes_to_zero_and_holds_fifty_first_requests_through_a_cold_start(
    alice: ApiClient, scales_to_zero: str
) -> None:
    service_id = scales_to_zero
    alice.wait_status(service_id, "available", timeout=90)
    wait_for(lambda: _at_zero(alice, service_id), timeout=60, what="the idle endpoint at zero")
    endpoint = alice.get(service_id)
    assert endpoint["status"] == "available"
    assert "scaled to zero" in endpoint["status_info"]
    assert endpoint["billing_metadata"]["price_per_hour"] in ("0", "0.000000", 0), endpoint

    def complete(i: int) -> requests.Response:
        return alice.gateway(
            service_id,
            "v1/completions",
            method="POST",
            json={"model": "fake-llm", "prompt": f"question {i}", "max_tokens": 4},
        )

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(complete, range(50)))
    took = time.monotonic() - started

    assert [r.status_code for r in responses] == [200] * 50, [
        r.text for r in responses if r.status_code != 200
    ][:3]
    assert all(r.json()["object"] == "text_completion" for r in responses)
    assert took >= 5, f"served in {took:.1f} s: the 5 s cold start was not waited for"
    _assert_woken(alice, service_id)


def test_a_request_asking_for_a_short_cold_start_gets_a_503_saying_so(
    alice: ApiClient, scales_to_zero: str
) -> None:
    service_id = scales_to_zero
    _wait_at_zero(alice, service_id)
    started = time.monotonic()
    response = alice.gateway(service_id, "health", headers={"X-Moorage-Cold-Start-Timeout": "1"})
    took = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "cold_start_timeout", response.text
    assert "X-Moorage-Cold-Start-Timeout" in response.json()["message"]
    assert response.headers.get("Retry-After"), response.headers
    assert 0.9 <= took < 5, took

    for value in ("soon", "-0", "1_0", "1e3", "nan", "3601", "\u00ef\u00bc"):
        bad = alice.gateway(service_id, "health", headers={"X-Moorage-Cold-Start-Timeout": value})
        assert bad.status_code == 400, (value, bad.text)
        assert "X-Moorage-Cold-Start-Timeout must be seconds" in bad.text, bad.text
    host, port = alice.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("GET", f"/inference-api/v1/inference_service/{service_id}/health")
        connection.putheader("Authorization", alice.headers["Authorization"])
        connection.putheader("X-Moorage-Cold-Start-Timeout", "1")
        connection.putheader("X-Moorage-Cold-Start-Timeout", "60")
        connection.endheaders()
        twice = connection.getresponse()
        assert twice.status == 400, twice.read()
        assert b"send one X-Moorage-Cold-Start-Timeout" in twice.read()
    finally:
        connection.close()


def test_nobody_but_its_owner_can_wake_an_endpoint_at_zero(
    alice: ApiClient, bob: ApiClient, scales_to_zero: str
) -> None:
    service_id = scales_to_zero
    _wait_at_zero(alice, service_id)
    path = f"/inference-api/v1/inference_service/{service_id}/health"
    for _ in range(20):
        assert bob.gateway(service_id, "health").status_code == 404
        stranger = requests.get(alice.base + path, timeout=10)
        assert stranger.status_code == 401, stranger.text
    time.sleep(2)  # several autoscaler looks
    assert _at_zero(alice, service_id), "another user's or no token's requests woke it"


def test_a_standalone_gateway_holds_a_request_and_wakes_an_endpoint_at_zero(
    server: MoorageServer,
    admin: ApiClient,
    alice: ApiClient,
    bob: ApiClient,
    scales_to_zero: str,
    tmp_path: Path,
) -> None:
    """``moorage gateway`` reports its demand to the control plane: a request it holds
    starts a replica as one held at ``moorage serve``'s own port does."""
    service_id = scales_to_zero
    _wait_at_zero(alice, service_id)
    with StandaloneGateway(tmp_path, control_plane=server.url, token=admin.token) as gateway:
        url = gateway.url(service_id, "v1/models")
        # Another user's token: 401 until the gateway has its table, 404 once it has.
        wait_for(
            lambda: requests.get(url, headers=bob.headers, timeout=10).status_code == 404,
            timeout=30,
            what="the standalone gateway's first route table",
        )
        response = requests.get(url, headers=alice.headers, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["data"][0]["id"] == "fake-llm"
    _assert_woken(alice, service_id)


def test_requests_held_for_an_endpoint_its_owner_stops_are_answered_at_once(
    alice: ApiClient, scales_to_zero: str
) -> None:
    service_id = scales_to_zero
    _wait_at_zero(alice, service_id)
    with ThreadPoolExecutor(max_workers=3) as pool:
        held = [pool.submit(alice.gateway, service_id, "health") for _ in range(3)]
        wait_for(lambda: _count(alice, service_id) == 1, timeout=10, what="the wake-up")
        stopped = alice.call("POST", f"{BASE}/{service_id}/stop")
        assert stopped.status_code == 200, stopped.text
        answered_at = time.monotonic()
        responses = [future.result(timeout=30) for future in held]
    assert time.monotonic() - answered_at < 4, "answered when stopped, not at the timeout"
    for response in responses:
        assert response.status_code == 503, response.text
        assert "is stopped" in response.json()["message"], response.text


def test_steady_short_requests_keep_an_endpoint_from_scaling_to_zero(
    alice: ApiClient, scales_to_zero: str
) -> None:
    """A request of a millisecond every half second is rarely in flight at the instant
    of a look, but the endpoint is in use: it must not go to zero and back."""
    service_id = scales_to_zero
    alice.wait_status(service_id, "available", timeout=90)
    wait_for(lambda: _count(alice, service_id) == 1, timeout=30, what="one replica")
    deadline = time.monotonic() + 12  # the window (2 s) and delay (3 s), twice over
    while time.monotonic() < deadline:
        response = alice.gateway(service_id, "health")
        assert response.status_code == 200, response.text
        assert _count(alice, service_id) == 1, _events(alice, service_id)[:3]
        time.sleep(0.5)
    assert not [m for m in _events(alice, service_id) if m.startswith("autoscaled from 1 to 0")]


def test_a_request_that_will_not_wait_still_wakes_an_endpoint_at_zero(
    alice: ApiClient, scales_to_zero: str
) -> None:
    service_id = scales_to_zero
    _wait_at_zero(alice, service_id)
    response = alice.gateway(service_id, "health", headers={"X-Moorage-Cold-Start-Timeout": "0"})
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "cold_start_timeout"
    wait_for(lambda: _count(alice, service_id) == 1, timeout=10, what="the wake-up it asked for")


def test_a_rollout_made_at_zero_finishes_when_its_first_replica_is_ready(
    alice: ApiClient, scales_to_zero: str
) -> None:
    service_id = scales_to_zero
    _wait_at_zero(alice, service_id)
    command = fake_llm_command(startup_s=1, model="fake-llm-2")
    change = {"deploy_metadata": {"command": command}}
    response = alice.call("PUT", f"{BASE}/{service_id}", json=change)
    assert response.status_code == 200, response.text

    models = alice.gateway(service_id, "v1/models")
    assert models.status_code == 200, models.text
    assert models.json()["data"][0]["id"] == "fake-llm-2", "served by the new revision"
    wait_for(
        lambda: any(
            m.startswith("rollout of revision 2 finished") for m in _events(alice, service_id)
        ),
        timeout=10,
        what="the rollout's end",
    )


def test_past_max_queue_a_cold_start_refuses_saying_how_many_it_holds(
    alice: ApiClient, scales_to_zero: str
) -> None:
    service_id = scales_to_zero
    small = {"gateway_metadata": {"max_queue": 2}}
    assert alice.call("PUT", f"{BASE}/{service_id}", json=small).status_code == 200
    _wait_at_zero(alice, service_id)
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _i: alice.gateway(service_id, "health"), range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429, 429], [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 429)
    assert "already holds 2 requests" in refused.json()["message"], refused.text
    assert refused.headers.get("Retry-After") == "2"


def test_an_endpoint_whose_replica_cannot_start_answers_at_once_saying_why(
    alice: ApiClient,
) -> None:
    body = _auto_body(
        alice,
        "cannot-start",
        {"min_instances": 0, "max_instances": 1},
        command="echo boom; exit 3",
    )
    service_id = _create(alice, body)
    try:
        alice.wait_status(service_id, "unavailable", timeout=60)
        started = time.monotonic()
        response = alice.gateway(service_id, "health")
        assert time.monotonic() - started < 3, "told at once, not at the cold-start timeout"
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "cannot_start", response.text
        assert "failed" in response.json()["message"], response.text
        assert "Retry-After" not in response.headers
    finally:
        _delete(alice, service_id)
