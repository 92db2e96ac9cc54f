"""A user's share of a GPU flavor counts GPUs, not replicas: a real ``moorage serve``
(process runtime) on declared GPUs, with normal users' replicas unsandboxed
(``MOORAGE_SANDBOX=off``, the one way the process runtime gives them GPUs).

What a user checks: the ``403 quota_exceeded`` naming ``flavor_share`` with their GPUs
after the change and the limit in GPUs, that a refused request holds nothing
(``available_num`` unchanged), that another user still gets GPUs, and the ``400`` for
one replica asking more GPUs than a node of the flavor has."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.test_gpus import PRINTS_ITS_GPUS, body, flavors, seen_gpus
from tests.support.server import ApiClient, wait_for

SERVER_ENV = {
    "MOORAGE_FLAVORS": str(Path(__file__).with_name("gpu_quota_flavors.toml")),
    "MOORAGE_SANDBOX": "off",
}


def gpu_body(flavor: dict[str, Any], name: str, target: int, gpu_num: int) -> dict[str, Any]:
    made = body(flavor["flavor_id"], name, target)
    made["deploy_metadata"]["gpu_num"] = gpu_num
    return made


def available(client: ApiClient, name: str) -> int:
    return int(flavors(client)[name]["available_num"])


def over_share(response: requests.Response, *mentions: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()
    assert error["code"] == "quota_exceeded", error
    message = str(error["message"])
    for text in ("flavor_share is 0.5", "you may hold 2 of the 4 GPUs of flavor QUOTA_GPU"):
        assert text in message, message
    assert "deploy_metadata.gpu_num" in message, message
    for text in mentions:
        assert text in message, message


@pytest.fixture
def clean(alice: ApiClient, bob: ApiClient) -> Iterator[None]:
    yield
    for client in (alice, bob):
        listed = client.call("GET", "/v1/inference-service", params={"page_size": 100}).json()
        for endpoint in listed["service_list"]:
            client.call("DELETE", f"/v1/inference-service/{endpoint['service_id']}")
    # Deleted endpoints' replicas hold their GPUs (and count against the share) until
    # they have stopped: the next test starts with every GPU free.
    wait_for(
        lambda: all(available(alice, name) == 4 for name in ("QUOTA_GPU", "SPLIT_GPU")),
        timeout=60,
        what="every GPU free",
    )


@pytest.mark.usefixtures("clean")
def test_a_share_of_a_gpu_flavor_counts_gpus_and_leaves_the_rest_to_others(
    alice: ApiClient, bob: ApiClient
) -> None:
    quota_gpu = flavors(alice)["QUOTA_GPU"]
    assert (quota_gpu["available_num"], quota_gpu["node_max_gpu"]) == (4, 4)

    # One replica, but all four GPUs: past a 0.5 share.
    one_of_four = alice.call(
        "POST", "/v1/inference-service", json=gpu_body(quota_gpu, "all-four", 1, 4)
    )
    over_share(one_of_four, "this would bring yours to 4 GPUs")
    two_of_two = alice.call(
        "POST", "/v1/inference-service", json=gpu_body(quota_gpu, "two-pairs", 2, 2)
    )
    over_share(two_of_two, "this would bring yours to 4 GPUs")
    assert alice.call("GET", "/v1/inference-service").json()["total"] == 0
    assert available(alice, "QUOTA_GPU") == 4, "a refused request holds no GPU"

    # Two GPUs, exactly the share: placed.
    created = alice.call("POST", "/v1/inference-service", json=gpu_body(quota_gpu, "pair", 1, 2))
    assert created.status_code == 200, created.text
    pair_id = created.json()["service_id"]
    alice.wait_status(pair_id, "available")
    assert len(wait_for(lambda: seen_gpus(alice, pair_id))) == 1
    # Growing it, by replicas or by GPUs per replica, is past the share.
    scaled = alice.call(
        "PUT",
        f"/v1/inference-service/{pair_id}",
        json={"resource_metadata": {"target_instance_number": 2}},
    )
    over_share(scaled, "this would bring yours to 4 GPUs")
    wider = alice.call(
        "PUT", f"/v1/inference-service/{pair_id}", json={"deploy_metadata": {"gpu_num": 3}}
    )
    over_share(wider, "this would bring yours to 3 GPUs")
    # The replicas quota still counts replicas: one; the share counts its two GPUs.
    usage = alice.call("GET", "/v1/quota").json()["usage"]
    assert usage["replicas"] == 1, usage
    assert usage["gpus_by_flavor"] == {quota_gpu["flavor_id"]: 2}, usage

    # The other half is another user's to take.
    theirs = bob.call("POST", "/v1/inference-service", json=gpu_body(quota_gpu, "bobs", 1, 2))
    assert theirs.status_code == 200, theirs.text
    theirs_id = theirs.json()["service_id"]
    bob.wait_status(theirs_id, "available")
    gpus = wait_for(lambda: seen_gpus(bob, theirs_id))
    assert len(gpus) == 1
    assert gpus[0] not in seen_gpus(alice, pair_id)
    assert available(alice, "QUOTA_GPU") == 0


def test_a_replica_asking_more_gpus_than_one_node_has_is_refused(alice: ApiClient) -> None:
    listed = flavors(alice)
    split = listed["SPLIT_GPU"]
    assert (split["available_num"], split["node_max_gpu"]) == (4, 2)
    for flavor, gpu_num, most in ((split, 3, 2), (listed["QUOTA_GPU"], 5, 4)):
        response = alice.call(
            "POST", "/v1/inference-service", json=gpu_body(flavor, "too-wide", 1, gpu_num)
        )
        assert response.status_code == 400, response.text
        error = response.json()
        assert error["code"] == "invalid_field", error
        assert (
            f"deploy_metadata.gpu_num: must be at most {most} on flavor "
            f"{flavor['display_name']} (node_max_gpu), got {gpu_num}"
        ) in error["message"]
    assert alice.call("GET", "/v1/inference-service").json()["total"] == 0
    assert available(alice, "SPLIT_GPU") == 4


def held_gpus(admin: ApiClient, service_id: str) -> int:
    """GPUs the endpoint's replicas hold, as ``/metrics`` shows them (admin only)."""
    text = admin.call("GET", "/metrics").text
    mine = re.findall(
        rf'^moorage_gpu_allocated\{{[^}}]*service_id="{service_id}"[^}}]*\}} 1\.0$', text, re.M
    )
    return len(mine)


def rollout_stops(client: ApiClient, service_id: str) -> list[str]:
    events = client.call(
        "GET", f"/v1/inference-service/{service_id}/events", params={"page_size": 100}
    ).json()["event_list"]
    return [str(e["detail"]) for e in events if e["kind"] == "stopped"]


def within_share(alice: ApiClient, admin: ApiClient, service_id: str, seconds: float) -> None:
    """Polls for ``seconds``: half the flavor stays free for another user, and the
    endpoint holds at most its owner's 2 GPUs (``/metrics``, read every 5 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert available(alice, "QUOTA_GPU") >= 2, "another user's share stays free"
        assert held_gpus(admin, service_id) <= 2
        time.sleep(0.1)


@pytest.mark.usefixtures("clean")
def test_a_rollout_keeps_a_user_within_her_share_of_a_gpu_flavor(
    alice: ApiClient, bob: ApiClient, admin: ApiClient
) -> None:
    """The surge of a rollout counts against flavor_share: at her share, a change to a
    command that never answers (with a day to start) replaces her replica one at a
    time; she never holds more than 2 of the 4 GPUs, a repeated change replaces the
    replica still starting, a change back to a serving command completes, and bob
    takes the other 2 GPUs."""
    quota_gpu = flavors(alice)["QUOTA_GPU"]
    wait_for(lambda: available(alice, "QUOTA_GPU") == 4, what="the GPUs free")
    created = alice.call("POST", "/v1/inference-service", json=gpu_body(quota_gpu, "pair", 1, 2))
    assert created.status_code == 200, created.text
    pair_id = created.json()["service_id"]
    alice.wait_status(pair_id, "available")

    for attempt in range(2):  # a repeated PUT replaces the replica still starting
        never_ready = {
            "command": "sleep 100001" + " " * attempt,
            "readiness_probe": {"startup_timeout_s": 86400},
        }
        changed = alice.call(
            "PUT", f"/v1/inference-service/{pair_id}", json={"deploy_metadata": never_ready}
        )
        assert changed.status_code == 200, changed.text
        within_share(alice, admin, pair_id, 6)
        usage = alice.call("GET", "/v1/quota").json()["usage"]
        assert usage["gpus_by_flavor"] == {quota_gpu["flavor_id"]: 2}, attempt
    assert (
        "rolling out one replica at a time: a surge would exceed your flavor_share"
        in rollout_stops(alice, pair_id)
    )

    # Back to a command that serves: the rollout completes, still within the share.
    fixed = alice.call(
        "PUT",
        f"/v1/inference-service/{pair_id}",
        json={"deploy_metadata": {"command": PRINTS_ITS_GPUS}},
    )
    assert fixed.status_code == 200, fixed.text
    deadline = time.monotonic() + 60
    while alice.get(pair_id)["status"] != "available":
        assert time.monotonic() < deadline, "the rollout never completed"
        within_share(alice, admin, pair_id, 0.5)
    assert wait_for(lambda: seen_gpus(alice, pair_id)), "the new revision runs on its GPUs"
    assert wait_for(lambda: held_gpus(admin, pair_id) == 2, timeout=15, what="2 GPUs on /metrics")

    theirs = bob.call("POST", "/v1/inference-service", json=gpu_body(quota_gpu, "bobs", 1, 2))
    assert theirs.status_code == 200, theirs.text
    bob.wait_status(theirs.json()["service_id"], "available")
    assert available(alice, "QUOTA_GPU") == 0


@pytest.mark.usefixtures("clean")
def test_gpus_a_stopping_replica_still_holds_count_against_the_share(alice: ApiClient) -> None:
    """Stop one endpoint and at once start another: the first's replicas keep their
    GPUs until they have stopped (one that ignores SIGTERM, for the stop grace), so
    the start is refused until they let go, never holding twice the share meanwhile."""
    flavor = flavors(alice)["QUOTA_GPU"]
    second = alice.call("POST", "/v1/inference-service", json=gpu_body(flavor, "b", 1, 2))
    assert second.status_code == 200, second.text
    second_id = second.json()["service_id"]
    alice.wait_status(second_id, "available")
    assert alice.call("POST", f"/v1/inference-service/{second_id}/stop").status_code == 200
    alice.wait_status(second_id, "stopped")
    wait_for(lambda: available(alice, "QUOTA_GPU") == 4, what="its GPUs free")
    lingering = gpu_body(flavor, "a", 1, 2)
    lingering["deploy_metadata"]["command"] = f"trap '' TERM; {PRINTS_ITS_GPUS}"
    first = alice.call("POST", "/v1/inference-service", json=lingering)
    assert first.status_code == 200, first.text
    first_id = first.json()["service_id"]
    alice.wait_status(first_id, "available")

    assert alice.call("POST", f"/v1/inference-service/{first_id}/stop").status_code == 200
    refused = alice.call("POST", f"/v1/inference-service/{second_id}/start")

    over_share(refused, "this would bring yours to 4 GPUs", "stopping have let go")
    assert available(alice, "QUOTA_GPU") >= 2, "the other half stays free"
    wait_for(lambda: available(alice, "QUOTA_GPU") == 4, what="the stopping replica's GPUs free")
    started = alice.call("POST", f"/v1/inference-service/{second_id}/start")
    assert started.status_code == 200, started.text
