"""What a request must look like, and what the gateway tells about endpoints it refuses.

Before: requests with no ``Host`` or two were accepted; a query string was cut at its
first ``/``; an unknown endpoint id answered 404 after 2 s while another user's answered
at once, telling an attacker which ids exist.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.support.gateway import PREFIX, StandaloneGateway, endpoint
from tests.support.raw_http import TOKEN, ScriptedReplica, connect, read_answer
from tests.support.server import ApiClient, MoorageServer, wait_for

# What this module checks is the gateway's framing, the same over either store.
STORES = ["sqlite"]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def answer_to(port: int, raw: bytes) -> tuple[int, dict[str, str] | None]:
    with connect(port) as sock:
        sock.sendall(raw)
        answer = read_answer(sock)
    try:
        return answer.status, answer.json()
    except ValueError:
        return answer.status, None


def _not_found(response: requests.Response) -> bool:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return False
    return response.status_code == 404 and response.json().get("code") == "not_found"


@pytest.mark.parametrize(
    "hosts",
    [b"", b"Host: a\r\nHost: b\r\n", b"Host: a\r\nhost: a\r\n"],
    ids=["none", "two", "same"],
)
def test_exactly_one_host_on_the_api_path(
    server: MoorageServer, alice: ApiClient, hosts: bytes
) -> None:
    raw = b"GET /v1/inference-service HTTP/1.1\r\n%bAuthorization: Bearer %b\r\n\r\n" % (
        hosts,
        alice.token.encode(),
    )
    status, body = answer_to(server.port, raw)
    assert status == 400, body
    assert body is not None
    assert "Host" in body["message"]
    assert alice.call("GET", "/v1/inference-service").status_code == 200


def test_exactly_one_host_on_the_inference_path(server: MoorageServer, alice: ApiClient) -> None:
    target = f"{PREFIX}whatever/x".encode()
    auth = f"Authorization: Bearer {alice.token}\r\n".encode()
    for hosts in (b"", b"Host: a\r\nHost: b\r\n"):
        status, body = answer_to(
            server.port, b"GET %b HTTP/1.1\r\n%b%b\r\n" % (target, hosts, auth)
        )
        assert status == 400, body
    # HTTP/1.0 has no Host requirement.
    status, _ = answer_to(server.port, b"GET %b HTTP/1.0\r\n%b\r\n" % (target, auth))
    assert status == 404


@pytest.mark.parametrize("path", [b"/v1/inference-service", f"{PREFIX}whatever/x".encode()])
def test_two_authorization_headers_are_refused_before_api_or_replica(
    server: MoorageServer, alice: ApiClient, bob: ApiClient, path: bytes
) -> None:
    """The API read the first of two Authorization headers and the gateway the last:
    a request could be checked as one user and served as another."""
    raw = (
        b"GET %b HTTP/1.1\r\nHost: h\r\n"
        b"Authorization: Bearer %b\r\nauthorization: Bearer %b\r\n\r\n"
        % (
            path,
            alice.token.encode(),
            bob.token.encode(),
        )
    )
    status, body = answer_to(server.port, raw)
    assert status == 400, body
    assert body is not None
    assert body["code"] == "bad_request"
    assert "Authorization" in body["message"]
    assert alice.call("GET", "/v1/inference-service").status_code == 200


def test_unknown_and_foreign_ids_answer_alike_and_at_once(
    server: MoorageServer, alice: ApiClient, bob: ApiClient
) -> None:
    bobs = bob.create(name="bobs-endpoint")["service_id"]
    # Wait until bob's endpoint is in the gateway's route table (he is answered by it).
    wait_for(
        lambda: not _not_found(bob.gateway(bobs, "x")),
        timeout=30,
        what="bob's endpoint in the route table",
    )
    answers = {}
    for label, service_id in (("foreign", bobs), ("unknown", "ep-does-not-exist")):
        started = time.monotonic()
        response = alice.gateway(service_id, "x")
        answers[label] = (response.status_code, sorted(response.json()), response.json()["code"])
        assert time.monotonic() - started < 0.5, f"{label} took {time.monotonic() - started} s"
    assert answers["foreign"] == answers["unknown"] == (404, ["code", "message"], "not_found")
    bob.call("DELETE", f"/v1/inference-service/{bobs}")


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[StandaloneGateway, ScriptedReplica]]:
    with ScriptedReplica(lambda head: OK) as replica:
        endpoints = [endpoint("svc", [replica.address], token=TOKEN)]
        with StandaloneGateway(tmp_path_factory.mktemp("query-gateway"), endpoints) as running:
            yield running, replica


@pytest.mark.parametrize(
    ("suffix", "forwarded"),
    [
        ("svc?a=b/c", "/?a=b/c"),
        ("svc/path?x=1/2&y=%2F", "/path?x=1/2&y=%2F"),
        ("svc/?q=a?b/c", "/?q=a?b/c"),
        ("svc", "/"),
    ],
)
def test_query_strings_reach_the_replica_untouched(
    recorded: tuple[StandaloneGateway, ScriptedReplica], suffix: str, forwarded: str
) -> None:
    gateway, replica = recorded
    raw = f"GET {PREFIX}{suffix} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    status, _ = answer_to(gateway.port, raw.encode())
    assert status == 200
    assert replica.heads[-1].split(b"\r\n")[0] == f"GET {forwarded} HTTP/1.1".encode()


def test_host_rules_on_a_standalone_gateway(
    recorded: tuple[StandaloneGateway, ScriptedReplica],
) -> None:
    gateway, _ = recorded
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    for hosts in (b"", b"Host: a\r\nHost: b\r\n"):
        status, _ = answer_to(
            gateway.port, b"GET %bsvc HTTP/1.1\r\n%b%b\r\n" % (PREFIX.encode(), hosts, auth)
        )
        assert status == 400
