"""A user sees and calls only their own endpoints; everything else needs a valid token,
and managing users and tokens needs the admin's."""

from __future__ import annotations

import pytest
import requests

from tests.support.server import ApiClient, MoorageServer, wait_for

OWNER_ROUTES = [
    ("GET", "/v1/inference-service/{id}", None),
    ("PUT", "/v1/inference-service/{id}", {"resource_metadata": {"target_instance_number": 2}}),
    ("POST", "/v1/inference-service/{id}/stop", None),
    ("POST", "/v1/inference-service/{id}/start", None),
    ("DELETE", "/v1/inference-service/{id}", None),
]


@pytest.fixture(scope="module")
def alices_endpoint(alice: ApiClient) -> str:
    service_id = str(alice.create(name="private")["service_id"])
    alice.wait_status(service_id, "available")
    return service_id


@pytest.mark.parametrize(("method", "path", "body"), OWNER_ROUTES)
def test_another_users_endpoint_looks_missing(
    alice: ApiClient,
    bob: ApiClient,
    alices_endpoint: str,
    method: str,
    path: str,
    body: dict[str, object] | None,
) -> None:
    before = alice.get(alices_endpoint)
    as_bob = bob.call(method, path.format(id=alices_endpoint), json=body)
    missing = bob.call(method, path.format(id="0" * 32), json=body)
    assert as_bob.status_code == missing.status_code == 404
    assert as_bob.json()["code"] == missing.json()["code"] == "not_found"
    after = alice.get(alices_endpoint)
    assert after["status"] == before["status"] == "available"
    assert after["resource_metadata"] == before["resource_metadata"]


def test_the_list_holds_only_the_callers_endpoints(
    alice: ApiClient, bob: ApiClient, alices_endpoint: str
) -> None:
    alice_ids = [
        e["service_id"] for e in alice.call("GET", "/v1/inference-service").json()["service_list"]
    ]
    bob_ids = [
        e["service_id"] for e in bob.call("GET", "/v1/inference-service").json()["service_list"]
    ]
    assert alices_endpoint in alice_ids
    assert alices_endpoint not in bob_ids


def test_the_gateway_serves_only_the_owner(
    alice: ApiClient, bob: ApiClient, admin: ApiClient, alices_endpoint: str
) -> None:
    assert alice.gateway(alices_endpoint).status_code == 200
    for stranger in (bob, admin):
        response = stranger.gateway(alices_endpoint)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("token", [None, "mrg_not_a_real_token"])
def test_every_route_but_healthz_needs_a_valid_token(
    server: MoorageServer, alices_endpoint: str, token: str | None
) -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    routes = [
        ("GET", "/v1/inference-service/flavor"),
        ("GET", "/v1/inference-service"),
        ("POST", "/v1/inference-service"),
        *[(m, p.format(id=alices_endpoint)) for m, p, _ in OWNER_ROUTES],
        ("GET", "/v1/users"),
        ("GET", "/v1/tokens"),
        ("GET", f"/inference-api/v1/inference_service/{alices_endpoint}"),
    ]
    for method, path in routes:
        response = requests.request(method, server.url + path, headers=headers, timeout=10)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["code"] == "unauthenticated"
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/users", None),
        ("POST", "/v1/users", {"name": "mallory"}),
        ("GET", "/v1/tokens", None),
        ("POST", "/v1/tokens", {"user_name": "alice"}),
        ("DELETE", "/v1/tokens/" + "0" * 32, None),
    ],
)
def test_users_and_tokens_are_admin_only(
    alice: ApiClient, method: str, path: str, body: dict[str, str] | None
) -> None:
    response = alice.call(method, path, json=body)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert response.json()["message"] == "managing users and tokens needs the admin token"


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("GET", "/metrics", None, "reading metrics needs the admin token"),
        (
            "GET",
            "/v1/gateway/routes",
            None,
            "reading the gateway's route table needs the admin token",
        ),
        ("PUT", "/v1/users/{user_id}/quota", {}, "changing a user's quotas needs the admin token"),
    ],
)
def test_a_refused_admin_call_says_what_was_asked(
    alice: ApiClient, method: str, path: str, body: dict[str, str] | None, message: str
) -> None:
    user_id = alice.call("GET", "/v1/quota").json()["user_id"]
    response = alice.call(method, path.format(user_id=user_id), json=body)
    assert response.status_code == 403, response.text
    assert response.json() == {"code": "forbidden", "message": message}


def test_admin_manages_users_and_a_revoked_token_stops_working(
    server: MoorageServer, admin: ApiClient, alice: ApiClient, alices_endpoint: str
) -> None:
    users = admin.call("GET", "/v1/users").json()["user_list"]
    assert {"admin", "alice"} <= {u["name"] for u in users}
    duplicate = admin.call("POST", "/v1/users", json={"name": "alice"})
    assert duplicate.status_code == 409

    alice_id = next(u["user_id"] for u in users if u["name"] == "alice")
    issued = admin.call("POST", "/v1/tokens", json={"user_id": alice_id, "name": "laptop"})
    assert issued.status_code == 201
    second = ApiClient(server.url, issued.json()["token"])
    assert second.get(alices_endpoint)["service_id"] == alices_endpoint
    # The gateway learns of tokens from the controller's next pass (a wake-up).
    wait_for(
        lambda: second.gateway(alices_endpoint).status_code == 200,
        what="the gateway to accept a new token",
        timeout=10,
    )

    listed = admin.call("GET", "/v1/tokens").json()["token_list"]
    assert issued.json()["token_id"] in {t["token_id"] for t in listed}
    assert all("token" not in t for t in listed)  # plain text is shown only once

    revoked = admin.call("DELETE", f"/v1/tokens/{issued.json()['token_id']}")
    assert revoked.json()["is_revoked"] is True
    assert second.call("GET", f"/v1/inference-service/{alices_endpoint}").status_code == 401
    wait_for(
        lambda: second.gateway(alices_endpoint).status_code == 401,
        what="the gateway to refuse a revoked token",
        timeout=10,
    )
    assert alice.gateway(alices_endpoint).status_code == 200
