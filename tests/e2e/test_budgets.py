"""Spending limits against a real ``moorage serve``: the admin sets a user's limit,
their endpoint runs into the warning and then the limit, moorage stops it and says
why, creates and starts are refused with 402 naming the limit, nothing is deleted,
and once the admin raises the limit the user starts it again.

The flavor costs 36 usd per GPU-hour, 0.01 usd a second for one GPU; a 0.1 usd limit
with its warning at 0.05 is reached about 10 s after the replica starts, and checked
every second (``MOORAGE_BUDGET_INTERVAL_S``).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_gpus import body, flavors
from tests.support.server import ApiClient, wait_for

SERVER_ENV = {
    "MOORAGE_FLAVORS": str(Path(__file__).with_name("billing_flavors.toml")),
    "MOORAGE_SANDBOX": "off",
    "MOORAGE_METERING_INTERVAL_S": "1",
    "MOORAGE_BUDGET_INTERVAL_S": "1",
}
SERVES = "exec python3 -m http.server $PORT"


@pytest.fixture
def clean(alice: ApiClient) -> Iterator[None]:
    yield
    listed = alice.call("GET", "/v1/inference-service", params={"page_size": 100}).json()
    for endpoint in listed["service_list"]:
        alice.call("DELETE", f"/v1/inference-service/{endpoint['service_id']}")


def _user_id(client: ApiClient) -> str:
    return str(client.call("GET", "/v1/quota").json()["user_id"])


def _own_usd(client: ApiClient) -> dict[str, Any]:
    got = client.call("GET", "/v1/budgets")
    assert got.status_code == 200, got.text
    [usd] = [b for b in got.json()["budgets"] if b["currency"] == "usd"]
    return dict(usd)


def _priced(client: ApiClient, name: str) -> dict[str, Any]:
    made = body(flavors(client)["PRICED_GPU"]["flavor_id"], name, 1)
    made["deploy_metadata"]["command"] = SERVES
    return made


def test_a_bad_limit_is_refused_naming_the_field(admin: ApiClient, alice: ApiClient) -> None:
    path = f"/v1/users/{_user_id(alice)}/budgets/usd"
    for bad, field in (
        ({"limit": "1.0000001"}, "limit"),
        ({"limit": "1e13"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "10", "warning": "NaN"}, "warning"),
        ({"limit": "10", "period": "week"}, "period"),
        # Only plain decimals: what a person reads is what is stored.
        ({"limit": "-0"}, "limit"),
        ({"limit": "5_0"}, "limit"),
        ({"limit": "\u0665"}, "limit"),  # an Arabic-Indic five
        ({"limit": " 5"}, "limit"),
        ({"limit": "+5"}, "limit"),
        # A JSON number with decimals has been through a float: only a plain one is taken.
        ({"limit": 1e-07}, "limit"),
        ({"limit": 1.0000001}, "limit"),
        ({"limit": True}, "limit"),
    ):
        refused = admin.call("PUT", path, json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert field in refused.json()["message"], (bad, refused.text)
    over = admin.call("PUT", path, json={"limit": "10", "warning": "11"})
    assert over.status_code == 400, over.text
    assert over.json()["message"].startswith("warning: must be between 0 and the limit 10")
    assert alice.call("PUT", path, json={"limit": "1000"}).status_code == 403
    assert admin.call("PUT", "/v1/users/nobody/budgets/usd", json={"limit": 1}).status_code == 404
    assert admin.call("GET", f"/v1/users/{_user_id(alice)}/budgets").json()["budgets"] == []
    plain = admin.call("PUT", path, json={"limit": 12, "warning": 0.05})
    assert (plain.json()["limit"], plain.json()["warning"]) == ("12", "0.05"), plain.text
    admin.call("DELETE", path)
    # Ids are bounded: a long one is refused, and not echoed back whole.
    for method, long_path in (
        ("GET", f"/v1/users/{'a' * 5000}/budgets"),
        ("GET", f"/v1/users/{'a' * 5000}/quota"),
        ("DELETE", f"/v1/users/{_user_id(alice)}/budgets/{'u' * 5000}"),
    ):
        refused = admin.call(method, long_path)
        assert refused.status_code == 422, refused.text
        assert len(refused.text) < 400, refused.text


def test_concurrent_writes_of_one_budget_replace_one_another(
    admin: ApiClient, alice: ApiClient
) -> None:
    path = f"/v1/users/{_user_id(alice)}/budgets/nmt"
    admin.call("DELETE", path)
    limits = [str(n) for n in range(1, 41)]

    def put(limit: str) -> int:
        return admin.call("PUT", path, json={"limit": limit}).status_code

    def delete(_limit: str) -> int:
        return admin.call("DELETE", path).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        puts = list(pool.map(put, limits))
        mixed = list(pool.map(lambda n: (put if int(n) % 2 else delete)(n), limits))

    assert set(puts) == {200}, puts
    assert set(mixed) <= {200, 404}, mixed
    left = admin.call("GET", f"/v1/users/{_user_id(alice)}/budgets").json()["budgets"]
    assert [b["limit"] for b in left if b["currency"] == "nmt"] in ([], *([n] for n in limits))
    admin.call("DELETE", path)


@pytest.mark.usefixtures("clean")
def test_an_endpoint_past_its_owners_limit_is_stopped_until_the_limit_is_raised(
    admin: ApiClient, alice: ApiClient
) -> None:
    alice_id = _user_id(alice)
    path = f"/v1/users/{alice_id}/budgets/usd"
    put = admin.call("PUT", path, json={"limit": "0.1", "warning": 0.05})
    assert put.status_code == 200, put.text
    assert {k: put.json()[k] for k in ("limit", "warning", "period", "state")} == {
        "limit": "0.1",
        "warning": "0.05",
        "period": "month",
        "state": "ok",
    }

    created = alice.call("POST", "/v1/inference-service", json=_priced(alice, "budgeted"))
    assert created.status_code == 200, created.text
    service_id = created.json()["service_id"]

    warned = wait_for(
        lambda: (usd := _own_usd(alice))["state"] == "warning" and usd,
        timeout=60,
        what="the warning",
    )
    assert "0.1 usd limit (warning at 0.05 usd)" in warned["message"]
    # The endpoint says so too, while it still runs.
    warning = wait_for(
        lambda: (got := alice.get(service_id))["billing_metadata"]["budget_state"] != "ok" and got,
        timeout=30,
        what="the warning on the endpoint",
    )
    if warning["billing_metadata"]["budget_state"] == "warning":
        assert "(warning at 0.05 usd)" in warning["billing_metadata"]["budget_message"]
        assert "(warning at 0.05 usd)" in warning["status_info"]

    stopped = alice.wait_status(service_id, "stopped", timeout=60)
    assert "spending limit reached" in stopped["status_info"]
    assert "of the 0.1 usd limit; the admin can raise it" in stopped["status_info"]
    assert stopped["status_info"].count("spending limit reached") == 1, stopped["status_info"]
    assert stopped["billing_metadata"]["budget_state"] == "exceeded"
    assert _own_usd(alice)["state"] == "exceeded"
    events = alice.call("GET", f"/v1/inference-service/{service_id}/events").json()
    assert any(
        e["kind"] == "stopped" and e["message"].startswith("stopped by moorage: spending limit")
        for e in events["event_list"]
    ), events

    refused_create = alice.call("POST", "/v1/inference-service", json=_priced(alice, "more"))
    refused_start = alice.call("POST", f"/v1/inference-service/{service_id}/start")
    for refused in (refused_create, refused_start):
        assert refused.status_code == 402, refused.text
        assert refused.json()["code"] == "budget_exceeded"
        assert "0.1 usd limit; the admin can raise it" in refused.json()["message"]

    # Nothing is deleted: the endpoint and what it cost are still there.
    kept = alice.get(service_id)
    assert kept["status"] == "stopped"
    assert kept["billing_metadata"]["cost_so_far"] >= 0.1
    listed = alice.call("GET", "/v1/inference-service").json()["service_list"]
    assert [e["service_id"] for e in listed] == [service_id]

    raised = admin.call("PUT", path, json={"limit": "1000"})
    assert raised.status_code == 200, raised.text
    assert (raised.json()["warning"], raised.json()["state"]) == ("800", "ok")
    still = alice.get(service_id)
    assert still["status"] == "stopped", "stays stopped until its user starts it"
    assert still["status_info"].endswith(
        "; the limit is no longer reached: POST .../start runs it again"
    ), still["status_info"]

    started = alice.call("POST", f"/v1/inference-service/{service_id}/start")
    assert started.status_code == 200, started.text
    assert started.json()["status"] != "stopped"
    assert started.json()["status_info"] is None or "limit" not in started.json()["status_info"]

    assert admin.call("DELETE", path).json()["budgets"] == []
    assert admin.call("DELETE", path).status_code == 404
