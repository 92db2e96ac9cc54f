"""``endpoint_url`` comes from ``MOORAGE_PUBLIC_URL`` (default: the listen address), never
from the request: a client's ``Host`` or ``X-Forwarded-*`` headers would otherwise put a
URL of their choosing into answers (and into anything that caches or shares them)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.raw_http import connect, read_answer
from tests.support.server import ApiClient, MoorageServer, endpoint_body, new_user_token

# What this module checks is the URLs the API writes, the same over either store.
STORES = ["sqlite"]

FORGED = [
    {"Host": "evil.example"},
    {"Host": "evil.example:8443", "X-Forwarded-Proto": "https"},
    {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
    {"X-Forwarded-Host": "evil.example", "Forwarded": "host=evil.example;proto=https"},
]


def _urls(client: ApiClient, headers: dict[str, str], service_id: str) -> list[str]:
    """endpoint_url as every route that shows an endpoint gives it."""
    answers: list[dict[str, Any]] = [
        client.call("GET", f"/v1/inference-service/{service_id}", headers=headers).json(),
        client.call(
            "PUT",
            f"/v1/inference-service/{service_id}",
            headers=headers,
            json={"description": "touched"},
        ).json(),
        *client.call("GET", "/v1/inference-service", headers=headers).json()["service_list"],
    ]
    return [a["endpoint_metadata"]["endpoint_url"] for a in answers]


@pytest.mark.parametrize("headers", FORGED, ids=lambda h: "+".join(h))
def test_request_headers_do_not_change_endpoint_url(
    server: MoorageServer, alice: ApiClient, bob: ApiClient, headers: dict[str, str]
) -> None:
    expected_base = f"http://127.0.0.1:{server.port}/inference-api/v1/inference_service/"
    created = alice.call(
        "POST",
        "/v1/inference-service",
        headers=headers,
        json=endpoint_body(alice.flavor_id(), name="url", deploy_metadata={"command": "sleep 600"}),
    )
    assert created.status_code == 200, created.text
    service_id = created.json()["service_id"]
    try:
        expected = expected_base + service_id
        assert created.json()["endpoint_metadata"]["endpoint_url"] == expected
        assert set(_urls(alice, headers, service_id)) == {expected}
        assert "evil" not in created.text
        # bob, asking normally, is still served.
        assert bob.call("GET", "/v1/inference-service").status_code == 200
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_public_url_sets_endpoint_url(
    tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> None:
    public = "https://moorage.example.com/base"
    # A short home: replica sockets live under it and Unix socket paths are short.
    home = tmp_path_factory.mktemp("pub")
    server = MoorageServer(
        home=home, database_url=database_url, extra_env={"MOORAGE_PUBLIC_URL": public + "/"}
    ).start()
    try:
        admin = ApiClient(server.url, server.admin_token or "")
        alice = ApiClient(server.url, new_user_token(admin, "alice"))
        body = endpoint_body(alice.flavor_id(), deploy_metadata={"command": "sleep 600"})
        created = alice.call(
            "POST", "/v1/inference-service", json=body, headers={"Host": "evil.example"}
        )
        assert created.status_code == 200, created.text
        service_id = created.json()["service_id"]
        expected = f"{public}/inference-api/v1/inference_service/{service_id}"
        assert created.json()["endpoint_metadata"]["endpoint_url"] == expected
        assert set(_urls(alice, {"X-Forwarded-Host": "evil.example"}, service_id)) == {expected}
    finally:
        server.stop()


@pytest.mark.parametrize(
    "path", ["/v1/inference-service/x/", "/v1/inference-service/", "/v1/users/", "/healthz/"]
)
def test_no_redirect_points_where_the_host_header_says(
    server: MoorageServer, alice: ApiClient, path: str
) -> None:
    """A trailing slash once answered 307 to ``http://<Host>/...``: an open redirect
    that any page could send a user's browser through."""
    with connect(server.port) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: evil.example\r\n"
            f"Authorization: Bearer {alice.token}\r\n\r\n".encode()
        )
        answer = read_answer(sock)
    assert answer.status == 404, answer
    assert answer.header("location") is None, answer
    assert b"evil" not in answer.body
