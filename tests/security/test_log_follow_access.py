"""A log follower keeps its access only while its caller has it: a stream opened with a
token ends soon after the admin revokes that token, and one on an endpoint ends soon
after the endpoint is deleted, though the replica goes on printing."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import requests

from tests.support.server import ApiClient, inline_app_command, wait_for

# What is checked is the follower, beside the store.
STORES = ["sqlite"]
# A follower re-checks its caller this often (seconds); the bound below allows for it,
# a store read and a loaded machine.
RECHECK_S = 5.0
ENDS_WITHIN_S = RECHECK_S + 10.0

# Prints a numbered line five times a second and serves HTTP on $PORT.
TICKER_APP = """\
import http.server, os, threading, time

def tick():
    number = 0
    while True:
        os.write(1, f"tick {number}\\n".encode())
        number += 1
        time.sleep(0.2)

threading.Thread(target=tick, daemon=True).start()
http.server.ThreadingHTTPServer(
    ("0.0.0.0", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler
).serve_forever()
"""


@dataclass
class Follower:
    """Reads a follow stream in a thread, noting when each line came."""

    response: requests.Response
    lines: list[tuple[float, str]] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                self.lines.append((time.monotonic(), line))
        except Exception:  # the test closes the response under the reader
            pass
        finally:
            self.ended.set()

    def ticks_after(self, moment: float) -> list[str]:
        return [line for at, line in self.lines if at > moment and line.startswith("tick")]


@contextlib.contextmanager
def _following(client: ApiClient, service_id: str) -> Iterator[Follower]:
    response = requests.get(
        f"{client.base}/v1/inference-service/{service_id}/logs",
        headers=client.headers,
        params={"follow": "true", "tail": "0"},
        stream=True,
        timeout=(10, 60),
    )
    assert response.status_code == 200, response.text
    follower = Follower(response)
    reader = threading.Thread(target=follower.read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: follower.ticks_after(0), timeout=30, what="the first followed tick")
        yield follower
    finally:
        response.close()
        reader.join(timeout=10)


def _ticker(client: ApiClient, name: str) -> str:
    created = client.create(name=name, deploy_metadata={"command": inline_app_command(TICKER_APP)})
    service_id = str(created["service_id"])
    client.wait_status(service_id, "available", timeout=90)
    return service_id


def _assert_ends(follower: Follower, since: float, why: str) -> None:
    assert follower.ended.wait(ENDS_WITHIN_S), (
        f"the follow stream still delivered lines {ENDS_WITHIN_S:g} s after {why}: "
        f"{follower.ticks_after(since)[-3:]}"
    )
    assert time.monotonic() - since < ENDS_WITHIN_S


def _issue(admin: ApiClient, user_id: str) -> dict[str, str]:
    response = admin.call("POST", "/v1/tokens", json={"user_id": user_id})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_revoked_tokens_follow_stream_ends(admin: ApiClient) -> None:
    user = admin.call("POST", "/v1/users", json={"name": "carol"})
    assert user.status_code == 201, user.text
    followed, spare = (_issue(admin, user.json()["user_id"]) for _ in range(2))
    carol = ApiClient(admin.base, followed["token"])
    service_id = _ticker(carol, "ticker-revoked")
    try:
        with _following(carol, service_id) as follower:
            revoked = admin.call("DELETE", f"/v1/tokens/{followed['token_id']}")
            assert revoked.status_code == 200, revoked.text
            since = time.monotonic()

            _assert_ends(follower, since, "the token was revoked")
            # The follower is told why, as the stream's last line.
            last = follower.lines[-1][1]
            assert last.startswith("[moorage] stopped following:"), last
            assert "token" in last
    finally:
        ApiClient(admin.base, spare["token"]).call("DELETE", f"/v1/inference-service/{service_id}")


def test_a_deleted_endpoints_follow_stream_ends(alice: ApiClient) -> None:
    service_id = _ticker(alice, "ticker-deleted")
    with _following(alice, service_id) as follower:
        deleted = alice.call("DELETE", f"/v1/inference-service/{service_id}")
        assert deleted.status_code == 200, deleted.text
        since = time.monotonic()

        _assert_ends(follower, since, "the endpoint was deleted")
