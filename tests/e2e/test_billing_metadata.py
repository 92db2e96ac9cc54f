"""An endpoint's ``billing_metadata`` read from a real ``moorage serve``: its price per
hour at today's flavor price (per GPU times ``gpu_num``, times the replicas it runs),
and what it has cost so far and this month, to the second, against the time its
replicas ran as the test measured it from outside.

The flavor costs 36 usd per GPU-hour, 0.01 usd per GPU-second, so two replicas of two
GPUs cost 0.04 usd a second: a few seconds are a readable amount.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_gpus import body, flavors
from tests.support.server import ApiClient, wait_for

SERVER_ENV = {
    "MOORAGE_FLAVORS": str(Path(__file__).with_name("billing_flavors.toml")),
    "MOORAGE_SANDBOX": "off",
    "MOORAGE_METERING_INTERVAL_S": "2",
}
SERVES = "exec python3 -m http.server $PORT"
PER_GPU_SECOND = 0.01


@pytest.fixture
def clean(alice: ApiClient) -> Iterator[None]:
    yield
    listed = alice.call("GET", "/v1/inference-service", params={"page_size": 100}).json()
    for endpoint in listed["service_list"]:
        alice.call("DELETE", f"/v1/inference-service/{endpoint['service_id']}")


def _billing(client: ApiClient, service_id: str) -> dict[str, Any]:
    got = client.call("GET", f"/v1/inference-service/{service_id}")
    assert got.status_code == 200, got.text
    billing: dict[str, Any] = got.json()["billing_metadata"]
    return billing


def _ready(client: ApiClient, service_id: str, wanted: int) -> bool:
    got = client.call("GET", f"/v1/inference-service/{service_id}").json()
    return bool(got["endpoint_metadata"]["ready_replicas"] == wanted)


def _within(cost: float, *, least: float, most: float) -> None:
    """Two replicas of two GPUs, each billed within a second of a life that lasted at
    least ``least`` and at most ``most`` seconds."""
    per_replica = 2 * PER_GPU_SECOND
    low, high = 2 * (least - 1) * per_replica, 2 * (most + 1) * per_replica
    assert low <= cost <= high, f"{cost} usd is not within [{low:.4f}, {high:.4f}]"


@pytest.mark.usefixtures("clean")
def test_billing_metadata_shows_the_price_now_and_the_cost_so_far(alice: ApiClient) -> None:
    priced = flavors(alice)["PRICED_GPU"]
    made = body(priced["flavor_id"], "priced", 2)
    made["deploy_metadata"]["gpu_num"] = 2
    made["deploy_metadata"]["command"] = SERVES
    created_at = time.monotonic()
    created = alice.call("POST", "/v1/inference-service", json=made)
    assert created.status_code == 200, created.text
    service_id = created.json()["service_id"]
    billing = created.json()["billing_metadata"]
    assert billing["payment_type"] == "usd"
    assert billing["price_per_instance_hour"] == 72.0, "36 usd per GPU-hour x 2 GPUs"
    assert billing["budget_state"] == "ok"
    assert billing["budget_message"] is None
    ready = wait_for(
        lambda: _ready(alice, service_id, 2) and time.monotonic(),
        timeout=60,
        what="two ready replicas",
    )

    assert _billing(alice, service_id)["price_per_hour"] == 144.0, "two replicas billing"

    # Cost grows while it runs, 0.02 usd a second per replica. Each replica was placed
    # between the create and the moment both read ready, and is billed per whole
    # second of the clock, so within one second of its time.
    time.sleep(3)
    before = time.monotonic()
    running = _billing(alice, service_id)
    after = time.monotonic()
    assert running["cost_so_far"] == running["cost_this_month"]
    _within(running["cost_so_far"], least=before - ready, most=after - created_at)

    stop_at = time.monotonic()
    stopping = alice.call("POST", f"/v1/inference-service/{service_id}/stop")
    assert stopping.status_code == 200, stopping.text
    gone = wait_for(
        lambda: (
            not alice.call("GET", f"/v1/inference-service/{service_id}").json()[
                "endpoint_metadata"
            ]["replicas"]
            and time.monotonic()
        ),
        timeout=30,
        what="its replicas gone",
    )
    stopped = _billing(alice, service_id)
    assert stopped["price_per_hour"] == 0.0, "nothing runs"
    assert stopped["price_per_instance_hour"] == 72.0
    _within(stopped["cost_so_far"], least=stop_at - ready, most=gone - created_at)
    time.sleep(2.5)  # a checkpoint later: stored, and no more
    assert _billing(alice, service_id)["cost_so_far"] == stopped["cost_so_far"]

    # Listed endpoints carry the same figures.
    listed = alice.call("GET", "/v1/inference-service").json()["service_list"]
    assert [e["billing_metadata"]["cost_so_far"] for e in listed] == [stopped["cost_so_far"]]


@pytest.mark.usefixtures("clean")
def test_an_endpoint_billed_in_another_currency_shows_that_currency(alice: ApiClient) -> None:
    priced = flavors(alice)["PRICED_GPU"]
    made = body(priced["flavor_id"], "in-nmt", 1)
    made["payment_type"] = "nmt"
    made["deploy_metadata"]["command"] = SERVES
    created = alice.call("POST", "/v1/inference-service", json=made)
    assert created.status_code == 200, created.text
    billing = created.json()["billing_metadata"]
    assert billing["payment_type"] == "nmt"
    assert billing["price_per_instance_hour"] == 0.147164
    service_id = created.json()["service_id"]
    wait_for(lambda: _ready(alice, service_id, 1), timeout=60, what="a ready replica")
    assert _billing(alice, service_id)["price_per_hour"] == 0.147164


def _slot(flavor: dict[str, Any], name: str, payment_type: str) -> dict[str, Any]:
    made = body(flavor["flavor_id"], name, 1)
    made["payment_type"] = payment_type
    made["deploy_metadata"]["gpu_num"] = 0
    made["deploy_metadata"]["command"] = SERVES
    return made


@pytest.mark.usefixtures("clean")
def test_a_flavor_is_sold_only_in_the_currencies_it_has_a_price_in(alice: ApiClient) -> None:
    listed = flavors(alice)
    usd_only, given_away = listed["USD_ONLY"], listed["GIVEN_AWAY"]

    refused = alice.call("POST", "/v1/inference-service", json=_slot(usd_only, "free-ride", "nmt"))
    assert refused.status_code == 400, refused.text
    assert refused.json()["message"] == (
        "payment_type: flavor USD_ONLY has no price in nmt; it is sold in usd: use one of those"
    )
    assert alice.call("GET", "/v1/inference-service").json()["total"] == 0, "nothing made"

    # A flavor priced in nothing is given away in any currency.
    free = alice.call("POST", "/v1/inference-service", json=_slot(given_away, "gift", "cny"))
    assert free.status_code == 200, free.text
    assert free.json()["billing_metadata"]["price_per_instance_hour"] == 0.0

    # Nor can a stopped endpoint be moved to such a currency and started.
    paid = alice.call("POST", "/v1/inference-service", json=_slot(usd_only, "paid", "usd"))
    assert paid.status_code == 200, paid.text
    service_id = paid.json()["service_id"]
    alice.call("POST", f"/v1/inference-service/{service_id}/stop")
    moved = alice.call("PUT", f"/v1/inference-service/{service_id}", json={"payment_type": "cny"})
    assert moved.status_code == 400, moved.text
    assert moved.json()["message"].startswith("payment_type: flavor USD_ONLY has no price in cny")


@pytest.mark.usefixtures("clean")
def test_a_running_endpoint_keeps_the_currency_its_replicas_are_billed_in(
    alice: ApiClient,
) -> None:
    priced = flavors(alice)["PRICED_GPU"]
    made = body(priced["flavor_id"], "switcher", 1)
    made["deploy_metadata"]["command"] = SERVES
    created = alice.call("POST", "/v1/inference-service", json=made)
    assert created.status_code == 200, created.text
    service_id = created.json()["service_id"]

    switched = alice.call(
        "PUT", f"/v1/inference-service/{service_id}", json={"payment_type": "nmt"}
    )
    assert switched.status_code == 400, switched.text
    assert switched.json()["message"].startswith(
        "payment_type: cannot change while the endpoint runs: its replicas are billed in usd"
    )
    assert alice.get(service_id)["payment_type"] == "usd", "nothing changed"

    # Stopped, it may change; its next replicas are billed in the new currency.
    alice.call("POST", f"/v1/inference-service/{service_id}/stop")
    changed = alice.call("PUT", f"/v1/inference-service/{service_id}", json={"payment_type": "nmt"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["billing_metadata"]["payment_type"] == "nmt"
