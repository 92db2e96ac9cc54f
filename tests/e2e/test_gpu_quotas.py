"""A user's share of a GPU flavor counts GPUs, not replicas: a real ``moorage serve``
(process runtime) on declared GPUs, with normal users' replicas unsandboxed
(``MOORAGE_SANDBOX=off``, the one way the process runtime gives them GPUs).

What a user checks: the ``403 quota_exceeded`` naming ``flavor_share`` with their GPUs
after the change and the limit in GPUs, that a refused request holds nothing
(``available_num`` unchanged), that another user still gets GPUs, and the ``400`` for
one replica asking more GPUs than a node of the flavor has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.test_gpus import body, flavors, seen_gpus
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
