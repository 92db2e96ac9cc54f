"""The configured admin token is the admin token: changing ``MOORAGE_ADMIN_TOKEN`` and
restarting revokes the old one; the configured one cannot be revoked through the API;
a configured token that was revoked (or is another user's) stops the start with a
message saying what to do, instead of being quietly brought back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.server import ApiClient, MoorageServer, new_user_token

OLD = "mrg_old_configured_admin_token"
NEW = "mrg_new_configured_admin_token"


@contextmanager
def serving(home: Path, database_url: str, token: str) -> Iterator[MoorageServer]:
    server = MoorageServer(home=home, database_url=database_url, admin_token=token).start()
    try:
        yield server
    finally:
        server.stop()


def _status(server: MoorageServer, token: str) -> int:
    return ApiClient(server.url, token).call("GET", "/v1/users").status_code


def test_a_changed_admin_token_replaces_the_old_one(tmp_path: Path, database_url: str) -> None:
    with serving(tmp_path, database_url, OLD) as server:
        assert _status(server, OLD) == 200
        admin = ApiClient(server.url, OLD)
        alice = new_user_token(admin, "alice")
        # Another token of the admin user, issued through the API, is not the configured one.
        issued = admin.call("POST", "/v1/tokens", json={"user_name": "admin", "name": "ci"})
        assert issued.status_code == 201, issued.text
        other_admin_token = issued.json()["token"]

    with serving(tmp_path, database_url, NEW) as server:
        assert _status(server, OLD) == 401
        assert _status(server, NEW) == 200
        assert _status(server, other_admin_token) == 200
        assert ApiClient(server.url, alice).call("GET", "/v1/inference-service").status_code == 200
        lines = [line for line in server.log().splitlines() if "revoked the previous admin" in line]
        assert len(lines) == 1, server.log()
        assert OLD[:8] in lines[0]
        assert OLD not in server.log()
        tokens = ApiClient(server.url, NEW).call("GET", "/v1/tokens").json()["token_list"]
        assert sum(1 for t in tokens if t["name"] == "admin" and not t["is_revoked"]) == 1

    # The same token again: nothing more is revoked.
    with serving(tmp_path, database_url, NEW) as server:
        assert _status(server, NEW) == 200
        assert _status(server, other_admin_token) == 200


def test_the_configured_token_cannot_be_revoked_through_the_api(
    tmp_path: Path, database_url: str
) -> None:
    with serving(tmp_path, database_url, OLD) as server:
        admin = ApiClient(server.url, OLD)
        tokens = admin.call("GET", "/v1/tokens").json()["token_list"]
        configured = next(t for t in tokens if t["prefix"] == OLD[:8])
        response = admin.call("DELETE", f"/v1/tokens/{configured['token_id']}")
        assert response.status_code == 409, response.text
        error = response.json()
        assert error["code"] == "admin_token_configured"
        assert "MOORAGE_ADMIN_TOKEN" in error["message"]
        assert "restart" in error["message"]
        assert _status(server, OLD) == 200

        # Any other token is revoked as before.
        alice = new_user_token(admin, "alice")
        alice_token = next(
            t for t in admin.call("GET", "/v1/tokens").json()["token_list"] if t["name"] == "token"
        )
        assert admin.call("DELETE", f"/v1/tokens/{alice_token['token_id']}").status_code == 200
        assert ApiClient(server.url, alice).call("GET", "/v1/inference-service").status_code == 401


def test_a_revoked_token_configured_again_stops_the_start(
    tmp_path: Path, database_url: str
) -> None:
    with serving(tmp_path, database_url, OLD):
        pass
    with serving(tmp_path, database_url, NEW):
        pass  # OLD is revoked now

    again = MoorageServer(home=tmp_path, database_url=database_url, admin_token=OLD)
    result = again.cli("serve")
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "was revoked" in message, message
    assert "MOORAGE_ADMIN_TOKEN" in message, message
    assert OLD not in message  # only its prefix

    with serving(tmp_path, database_url, NEW) as server:
        assert _status(server, NEW) == 200
        assert _status(server, OLD) == 401


def test_another_users_token_cannot_become_the_admin_token(
    tmp_path: Path, database_url: str
) -> None:
    with serving(tmp_path, database_url, OLD) as server:
        alice = new_user_token(ApiClient(server.url, OLD), "alice")

    hijack = MoorageServer(home=tmp_path, database_url=database_url, admin_token=alice)
    result = hijack.cli("serve")
    assert result.returncode == 2, result.stderr
    assert "another user" in " ".join(result.stderr.split())

    with serving(tmp_path, database_url, OLD) as server:
        assert _status(server, alice) == 403
