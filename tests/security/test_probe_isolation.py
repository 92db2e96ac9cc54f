"""One tenant's readiness probe must not hold up anyone else.

Alice deploys an app that answers its probe path one byte a second, forever, and
one that accepts the connection and never answers (with the longest probe timeout
the API allows). Probing them must not delay the control loop: Bob's new endpoint
still becomes available in its normal time, and a token the admin revokes stops
working at the gateway within a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.server import ApiClient, inline_app_command, wait_for

# Both apps print a line when a probe reaches them, so the test knows the attack runs.
_HOSTILE_APP = """
import os, socket, sys, threading, time

MODE = os.environ["PROBE_MODE"]


def drip(conn):
    try:
        conn.sendall(b"HTTP/1.1 200 OK\\r\\nX-Drip: ")
        while True:  # a header that never ends, one byte a second
            time.sleep(1)
            conn.sendall(b"a")
    except OSError:
        pass
    finally:
        conn.close()


def silent(conn):
    try:
        while conn.recv(4096):  # read what comes, answer nothing
            pass
    except OSError:
        pass
    finally:
        conn.close()


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(os.environ["PORT"])))
server.listen(64)
print("listening", MODE, flush=True)
while True:
    conn, _ = server.accept()
    print("probed", MODE, flush=True)
    threading.Thread(target=drip if MODE == "drip" else silent, args=(conn,), daemon=True).start()
"""
HOSTILE_COMMAND = inline_app_command(_HOSTILE_APP)
# Normal time for the Flask app to become available, with room for a loaded machine.
NORMAL_START_S = 45.0
# A revoked token reaches the gateway with the next route table (a pass, 1 s).
REVOCATION_S = 5.0


def _logs(client: ApiClient, service_id: str) -> str:
    response = client.call("GET", f"/v1/inference-service/{service_id}/logs")
    return response.text if response.status_code == 200 else ""


@pytest.fixture(scope="module")
def bob_serving(bob: ApiClient) -> Iterator[str]:
    """Bob's endpoint, available before the attack starts."""
    service_id = str(bob.create(name="bob-before-attack")["service_id"])
    try:
        bob.wait_status(service_id, "available", timeout=NORMAL_START_S)
        yield service_id
    finally:
        bob.call("DELETE", f"/v1/inference-service/{service_id}")


@pytest.fixture(scope="module")
def hostile(alice: ApiClient) -> Iterator[list[str]]:
    """Alice's two endpoints whose probes never complete, being probed."""
    created = [
        alice.create(
            name=f"probe-{mode}",
            deploy_metadata={
                "command": HOSTILE_COMMAND,
                "env": {"PROBE_MODE": mode},
                "readiness_probe": {"path": "/ready", "timeout_s": timeout_s},
            },
        )["service_id"]
        for mode, timeout_s in (("drip", 60), ("silent", 600))
    ]
    try:
        wait_for(
            lambda: any("probed" in _logs(alice, s) for s in created),
            timeout=NORMAL_START_S,
            what="moorage to probe alice's endpoints",
        )
        yield created
    finally:
        for service_id in created:
            alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_a_probe_that_never_completes_does_not_hold_up_other_users(
    alice: ApiClient, bob: ApiClient, bob_serving: str, hostile: list[str]
) -> None:
    service_id = bob.create(name="bob-during-attack")["service_id"]
    try:
        bob.wait_status(service_id, "available", timeout=NORMAL_START_S)
        assert bob.gateway(service_id).status_code == 200
    finally:
        bob.call("DELETE", f"/v1/inference-service/{service_id}")
    assert bob.gateway(bob_serving).status_code == 200
    for hostile_id in hostile:  # never ready
        assert alice.get(hostile_id)["status"] == "initializing"


def test_a_revoked_token_stops_working_at_the_gateway_during_the_attack(
    admin: ApiClient, bob: ApiClient, bob_serving: str, hostile: list[str]
) -> None:
    users = admin.call("GET", "/v1/users").json()["user_list"]
    bob_id = next(u["user_id"] for u in users if u["name"] == "bob")
    issued = admin.call("POST", "/v1/tokens", json={"user_id": bob_id})
    assert issued.status_code == 201, issued.text
    second = ApiClient(bob.base, issued.json()["token"])
    wait_for(
        lambda: second.gateway(bob_serving).status_code == 200,
        timeout=REVOCATION_S,
        what="bob's new token to be accepted at the gateway",
    )
    revoked = admin.call("DELETE", f"/v1/tokens/{issued.json()['token_id']}")
    assert revoked.status_code == 200, revoked.text
    wait_for(
        lambda: second.gateway(bob_serving).status_code == 401,
        timeout=REVOCATION_S,
        what="the revoked token to be refused at the gateway",
    )
    assert bob.gateway(bob_serving).status_code == 200  # bob's own token still works
