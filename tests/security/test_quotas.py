"""Per-user quotas: one user cannot take a flavor, the replicas or the store from the others.

Each quota refuses with ``403 quota_exceeded`` and a message naming the quota, its value,
what the request would take it to and what to do; a refused request changes nothing
(the user's endpoints and every flavor's ``available_num`` are as before). The admin
raises a user's quota through the API and the same request then succeeds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.server import ApiClient, endpoint_body

REPO = Path(__file__).resolve().parents[2]
# The reference's flavors: two of capacity 4 (a user's share is 2), "CPU" of capacity 8.
SMALL = "69475e82e81c4dd6be3467e2ca374e0c"
SERVER_ENV = {
    "MOORAGE_FLAVORS": str(REPO / "examples" / "flavors.toml"),
    "MOORAGE_QUOTA_ENDPOINTS": "3",
    "MOORAGE_QUOTA_REPLICAS": "3",
    "MOORAGE_QUOTA_COMMAND_BYTES": "2048",
    "MOORAGE_QUOTA_ENV_VARS": "4",
    "MOORAGE_QUOTA_ENV_BYTES": "512",
    "MOORAGE_QUOTA_NAME_CHARS": "32",
    "MOORAGE_QUOTA_DESCRIPTION_CHARS": "64",
}
# Replicas that never need to answer: the quotas count what endpoints ask for.
IDLE = "sleep 600"


def _cpu(client: ApiClient) -> str:
    flavors = client.call("GET", "/v1/inference-service/flavor").json()["flavor_list"]
    return next(str(f["flavor_id"]) for f in flavors if f["display_name"] == "CPU")


def _body(flavor_id: str, name: str, count: int = 1, **overrides: Any) -> dict[str, Any]:
    deploy = {"command": IDLE, **overrides.pop("deploy_metadata", {})}
    return endpoint_body(
        flavor_id,
        name=name,
        resource_metadata={"target_instance_number": count},
        deploy_metadata=deploy,
        **overrides,
    )


def _create(client: ApiClient, body: dict[str, Any]) -> requests.Response:
    return client.call("POST", "/v1/inference-service", json=body)


def _created(client: ApiClient, body: dict[str, Any]) -> str:
    response = _create(client, body)
    assert response.status_code == 200, response.text
    return str(response.json()["service_id"])


def _state(client: ApiClient) -> tuple[list[tuple[str, str, int]], dict[str, int]]:
    """The caller's endpoints (id, desired status, replicas) and every flavor's free slots."""
    endpoints = client.call("GET", "/v1/inference-service", params={"page_size": 100}).json()
    flavors = client.call("GET", "/v1/inference-service/flavor").json()["flavor_list"]
    mine = sorted(
        (
            e["service_id"],
            "stopped" if e["status"] == "stopped" else "running",
            e["resource_metadata"]["target_instance_number"],
        )
        for e in endpoints["service_list"]
    )
    return mine, {f["flavor_id"]: f["available_num"] for f in flavors}


def _refused(response: requests.Response, quota: str, *mentions: str) -> str:
    assert response.status_code == 403, response.text
    error = response.json()
    assert error["code"] == "quota_exceeded", error
    message = str(error["message"])
    assert f"quota exceeded: {quota} is" in message, message
    assert "ask the admin" in message, message
    for text in mentions:
        assert text in message, message
    return message


def _user_id(client: ApiClient) -> str:
    response = client.call("GET", "/v1/quota")
    assert response.status_code == 200, response.text
    return str(response.json()["user_id"])


def _set_quota(admin: ApiClient, client: ApiClient, **limits: Any) -> dict[str, Any]:
    response = admin.call("PUT", f"/v1/users/{_user_id(client)}/quota", json=limits)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def clean(alice: ApiClient, bob: ApiClient, admin: ApiClient) -> Iterator[None]:
    """Every test starts and ends with no endpoints and default quotas."""
    yield
    defaults = {
        "endpoints": None,
        "replicas": None,
        "flavor_share": None,
        "command_bytes": None,
        "env_vars": None,
        "env_bytes": None,
        "name_chars": None,
        "description_chars": None,
    }
    for client in (alice, bob, admin):
        listed = client.call("GET", "/v1/inference-service", params={"page_size": 100}).json()
        for endpoint in listed["service_list"]:
            client.call("DELETE", f"/v1/inference-service/{endpoint['service_id']}")
        if client is not admin:
            _set_quota(admin, client, **defaults)


@pytest.mark.usefixtures("clean")
def test_endpoint_count_quota(alice: ApiClient, bob: ApiClient, admin: ApiClient) -> None:
    cpu = _cpu(alice)
    for n in range(3):
        service_id = _created(alice, _body(cpu, f"e{n}"))
        assert alice.call("POST", f"/v1/inference-service/{service_id}/stop").status_code == 200
    before = _state(alice)

    fourth = _body(cpu, "e3")
    _refused(_create(alice, fourth), "endpoints", "endpoints is 3", "to 4", "delete an endpoint")
    assert _state(alice) == before
    # bob is not affected by alice's count.
    _created(bob, _body(cpu, "bobs"))

    assert _set_quota(admin, alice, endpoints=4)["custom"] == ["endpoints"]
    _created(alice, fourth)


@pytest.mark.usefixtures("clean")
def test_replica_quota_on_create_scale_and_start(alice: ApiClient, admin: ApiClient) -> None:
    cpu = _cpu(alice)
    big = _created(alice, _body(cpu, "big", 3))
    before = _state(alice)

    _refused(_create(alice, _body(SMALL, "more")), "replicas", "replicas is 3", "to 4")
    assert _state(alice) == before

    # Scaling down is always allowed; scaling back up past the quota is not.
    scale = {"resource_metadata": {"target_instance_number": 2}}
    assert alice.call("PUT", f"/v1/inference-service/{big}", json=scale).status_code == 200
    small = _created(alice, _body(SMALL, "small"))
    before = _state(alice)
    scale_up = {"resource_metadata": {"target_instance_number": "3"}}
    response = alice.call("PUT", f"/v1/inference-service/{big}", json=scale_up)
    _refused(response, "replicas", "to 4", "stop or scale down")
    assert _state(alice) == before

    # A stopped endpoint cannot come back past the quota either.
    assert alice.call("POST", f"/v1/inference-service/{small}/stop").status_code == 200
    assert alice.call("PUT", f"/v1/inference-service/{big}", json=scale_up).status_code == 200
    before = _state(alice)
    _refused(alice.call("POST", f"/v1/inference-service/{small}/start"), "replicas", "to 4")
    assert _state(alice) == before

    _set_quota(admin, alice, replicas=4)
    assert alice.call("POST", f"/v1/inference-service/{small}/start").status_code == 200


@pytest.mark.usefixtures("clean")
def test_flavor_share_leaves_room_for_others(alice: ApiClient, bob: ApiClient) -> None:
    _created(alice, _body(SMALL, "half", 2))
    before = _state(alice)
    assert before[1][SMALL] == 2

    message = _refused(_create(alice, _body(SMALL, "more")), "flavor_share", "is 0.5")
    assert "2 of the 4 replicas" in message
    assert "to 3" in message
    assert _state(alice) == before

    # bob still gets his share of the flavor alice wanted to take.
    _created(bob, _body(SMALL, "bobs", 2))
    assert _state(alice)[1][SMALL] == 0


SIZE_CASES: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    (
        "command_bytes",
        {"deploy_metadata": {"command": IDLE + " # " + "x" * 3000}},
        "is 2048",
        {"command_bytes": 4096},
    ),
    (
        "env_vars",
        {"deploy_metadata": {"env": {f"V{i}": "1" for i in range(5)}}},
        "5 variables",
        {"env_vars": 5},
    ),
    (
        "env_bytes",
        {"deploy_metadata": {"env": {"BIG": "x" * 600}}},
        "is 512",
        {"env_bytes": 1024},
    ),
    ("name_chars", {"name": "n" * 40}, "40 characters", {"name_chars": 64}),
    ("description_chars", {"description": "d" * 100}, "100 characters", {"description_chars": 128}),
]


@pytest.mark.usefixtures("clean")
@pytest.mark.parametrize(
    ("quota", "changes", "mentions", "raised"),
    [pytest.param(q, c, m, r, id=q) for q, c, m, r in SIZE_CASES],
)
def test_size_quotas(
    alice: ApiClient,
    admin: ApiClient,
    quota: str,
    changes: dict[str, Any],
    mentions: str,
    raised: dict[str, Any],
) -> None:
    cpu = _cpu(alice)
    existing = _created(alice, _body(cpu, "existing"))
    before = _state(alice)
    body = _body(cpu, "sized")
    for key, value in changes.items():
        body[key] = {**body[key], **value} if isinstance(value, dict) else value

    _refused(_create(alice, body), quota, mentions, "make it smaller")
    # The same change to an existing endpoint is refused too, and changes nothing.
    patch = {k: v for k, v in changes.items() if k != "name"} or {"name": changes["name"]}
    shown = alice.get(existing)
    _refused(alice.call("PUT", f"/v1/inference-service/{existing}", json=patch), quota)
    after = alice.get(existing)
    assert (after["name"], after["description"], after["deploy_metadata"]) == (
        shown["name"],
        shown["description"],
        shown["deploy_metadata"],
    )
    assert _state(alice) == before

    _set_quota(admin, alice, **raised)
    _created(alice, body)


@pytest.mark.usefixtures("clean")
def test_users_cannot_read_or_change_quotas(
    alice: ApiClient, bob: ApiClient, admin: ApiClient
) -> None:
    alice_id, bob_id = _user_id(alice), _user_id(bob)

    read = alice.call("GET", f"/v1/users/{bob_id}/quota")
    assert read.status_code == 403, read.text
    assert read.json()["code"] == "forbidden"
    for target in (alice_id, bob_id):
        change = alice.call("PUT", f"/v1/users/{target}/quota", json={"replicas": 100})
        assert change.status_code == 403, change.text

    own = alice.call("GET", f"/v1/users/{alice_id}/quota")
    assert own.status_code == 200, own.text
    assert own.json()["quota"]["replicas"] == 3
    assert own.json()["custom"] == []
    assert admin.call("GET", f"/v1/users/{bob_id}/quota").json()["quota"]["replicas"] == 3

    unknown = admin.call("PUT", "/v1/users/" + "0" * 32 + "/quota", json={"replicas": 1})
    assert unknown.status_code == 404, unknown.text
    out_of_range = admin.call("PUT", f"/v1/users/{bob_id}/quota", json={"flavor_share": 2})
    assert out_of_range.status_code == 422, out_of_range.text
    assert "flavor_share" in out_of_range.json()["message"]


@pytest.mark.usefixtures("clean")
def test_quota_shows_usage_and_null_restores_the_default(
    alice: ApiClient, admin: ApiClient
) -> None:
    _created(alice, _body(SMALL, "one", 2))
    shown = _set_quota(admin, alice, replicas=5, flavor_share=0.25)
    assert shown["quota"]["replicas"] == 5
    assert shown["quota"]["flavor_share"] == 0.25
    assert shown["custom"] == ["flavor_share", "replicas"]
    assert shown["usage"] == {
        "endpoints": 1,
        "replicas": 2,
        "replicas_by_flavor": {SMALL: 2},
        "gpus_by_flavor": {},
    }

    restored = _set_quota(admin, alice, replicas=None)
    assert restored["quota"]["replicas"] == 3
    assert restored["custom"] == ["flavor_share"]


@pytest.mark.usefixtures("clean")
def test_the_admin_is_not_bound_by_quotas(admin: ApiClient) -> None:
    body = _body(SMALL, "admins", 4, deploy_metadata={"command": IDLE + " # " + "x" * 3000})
    _created(admin, body)


@pytest.mark.usefixtures("clean")
def test_a_full_flavor_answers_503_and_a_request_beyond_it_400(
    alice: ApiClient, admin: ApiClient
) -> None:
    _created(admin, _body(SMALL, "all-of-it", 4))
    before = _state(alice)

    full = _create(alice, _body(SMALL, "none-left"))
    assert full.status_code == 503, full.text
    assert full.json()["code"] == "insufficient_capacity"
    assert "0 of its 4 are free" in full.json()["message"]
    beyond = _create(admin, _body(SMALL, "too-big", 5))
    assert beyond.status_code == 400, beyond.text
    assert (
        "resource_metadata.target_instance_number: must be between 1 and 4"
        in (beyond.json()["message"])
    )
    assert _state(alice) == before


def _running_replicas(client: ApiClient) -> tuple[int, dict[str, int]]:
    """Replicas the caller's running endpoints want, in all and per flavor."""
    listed = client.call("GET", "/v1/inference-service", params={"page_size": 100}).json()
    per_flavor: dict[str, int] = {}
    for e in listed["service_list"]:
        if e["status"] != "stopped":
            flavor = e["resource_metadata"]["flavor_id"]
            wanted = int(e["resource_metadata"]["target_instance_number"])
            per_flavor[flavor] = per_flavor.get(flavor, 0) + wanted
    return sum(per_flavor.values()), per_flavor


@pytest.mark.usefixtures("clean")
def test_concurrent_changes_cannot_add_up_past_a_quota(alice: ApiClient) -> None:
    """Each change fits alone; sent at once, they once all passed their checks before
    any was written (alice took every slot of a flavor that way)."""
    for attempt in range(5):
        cpu = _cpu(alice)
        scaled = [_created(alice, _body(cpu, f"race-{attempt}-{n}")) for n in range(2)]
        stopped = _created(alice, _body(SMALL, f"race-{attempt}-stopped"))
        assert alice.call("POST", f"/v1/inference-service/{stopped}/stop").status_code == 200
        calls = [
            (
                "PUT",
                f"/v1/inference-service/{s}",
                {"resource_metadata": {"target_instance_number": 2}},
            )
            for s in scaled
        ] + [("POST", f"/v1/inference-service/{stopped}/start", None)]
        barrier = threading.Barrier(len(calls))

        def send(call: tuple[str, str, Any], barrier: threading.Barrier = barrier) -> int:
            method, path, body = call
            barrier.wait(timeout=30)
            return alice.call(method, path, json=body).status_code

        with ThreadPoolExecutor(len(calls)) as pool:
            statuses = list(pool.map(send, calls))
        assert set(statuses) <= {200, 400, 403}, statuses
        total, per_flavor = _running_replicas(alice)
        assert total <= 3, f"replicas quota 3 exceeded: {per_flavor} ({statuses})"
        assert statuses.count(200) == 1, statuses  # each fits alone: exactly one fits
        for service_id in [*scaled, stopped]:
            alice.call("DELETE", f"/v1/inference-service/{service_id}")
