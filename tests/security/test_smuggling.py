"""Request smuggling: a message whose framing the gateway and the next hop read differently.

Without a token, a request with ``Connection: content-length`` (the gateway dropped
the header it names but forwarded the body) left its body on a pooled connection to
the API or a replica, where it became the start of the next caller's request. From the
other side, a hostile replica's response could reach the client unframed, or turn the
client's connection into a raw tunnel with an unrequested ``101``. The gateway now
frames every message itself: each of these is refused, and the next caller gets its
own answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.backends import HELLO, Replica
from tests.support.gateway import PREFIX, StandaloneGateway, endpoint
from tests.support.raw_http import AUTH, TOKEN, RawClient, ScriptedReplica, connect, read_answer
from tests.support.server import ApiClient, MoorageServer

# What this module checks is the gateway's framing, the same over either store.
STORES = ["sqlite"]

SMUGGLED_TO_API = b"GET /healthz HTTP/1.1\r\nX-Swallow: "
FORGED = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"


def framing_attack(target: str, smuggled: bytes, hop: str = "content-length") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: moorage\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Connection: {hop}\r\nContent-Length: {len(smuggled)}\r\n\r\n"
    ).encode() + smuggled


# -- the request side, against moorage serve's API ------------------------------------


def test_a_body_hidden_from_the_framing_never_reaches_the_api(
    server: MoorageServer, alice: ApiClient
) -> None:
    for _ in range(3):
        with connect(server.port) as sock:
            sock.sendall(framing_attack("/v1/nothing-here", SMUGGLED_TO_API))
            answer = read_answer(sock)
        assert answer.status == 400, answer
        assert answer.json()["code"] == "bad_request"
        assert "content-length" in answer.json()["message"]
        # The victim's call would have completed the smuggled request on that connection.
        for _ in range(3):
            listed = alice.call("GET", "/v1/inference-service")
            assert listed.status_code == 200, listed.text
            assert "status" not in listed.json(), f"answered the smuggled call: {listed.text}"


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /v1/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Content-Length: 40\r\n\r\nabc",
    ],
    ids=["cl-and-te", "two-content-lengths"],
)
def test_ambiguous_framing_is_refused_by_moorage_serve(
    server: MoorageServer, alice: ApiClient, raw: bytes
) -> None:
    with connect(server.port) as sock:
        sock.sendall(raw)
        answer = read_answer(sock)
    assert answer.status == 400, answer
    assert alice.call("GET", "/v1/inference-service").status_code == 200


@pytest.mark.parametrize("padding", [b" ", b"\t", b" \t "], ids=["space", "tab", "mixed"])
def test_a_padded_content_length_frames_the_body_it_announced(
    server: MoorageServer, alice: ApiClient, bob: ApiClient, padding: bytes
) -> None:
    """``Content-Length: N `` (optional whitespace, which parsers allow) once went
    upstream as ``content-length: 0`` followed by the N bytes: a request of the
    attacker's, completed by the next caller's head and run with the caller's token."""
    victims = bob.create(name=f"smuggling-victim-{padding.hex()}")
    service_id = victims["service_id"]
    smuggled = f"POST /v1/inference-service/{service_id}/stop HTTP/1.1\r\nX-Pad: ".encode()
    attack = b"GET /healthz HTTP/1.1\r\nHost: moorage\r\nContent-Length: %d%b\r\n\r\n%b" % (
        len(smuggled),
        padding,
        smuggled,
    )
    for _ in range(3):
        with connect(server.port) as sock:
            sock.sendall(attack)
            answer = read_answer(sock)
        assert answer.status in (200, 400), answer
        for caller in (bob, alice):
            quota = caller.call("GET", "/v1/quota")
            assert quota.status_code == 200, quota.text
            assert {"user_id", "quota", "usage"} <= quota.json().keys(), quota.text
    assert bob.get(service_id)["resource_metadata"]["target_instance_number"] == 1
    assert bob.get(service_id)["status"] != "stopped"


# -- the replica path, on a standalone gateway ----------------------------------------


def _forged_after_a_body(head: bytes) -> bytes:
    """A response whose Content-Length covers a second, forged response, and which asks
    the gateway to drop that Content-Length."""
    return b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: %d\r\n\r\n%b" % (
        len(FORGED),
        FORGED,
    )


def _unrequested_upgrade(head: bytes) -> bytes:
    return b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: evil\r\n\r\n" + (
        FORGED
    )


def _cl_and_te(head: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n" + FORGED
    )


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneGateway]:
    with (
        Replica() as honest,
        ScriptedReplica(_forged_after_a_body) as unframed,
        ScriptedReplica(_unrequested_upgrade) as upgrader,
        ScriptedReplica(_cl_and_te) as ambiguous,
    ):
        endpoints = [
            endpoint("svc", [honest.address], token=TOKEN),
            endpoint("unframed", [unframed.address], token=TOKEN),
            endpoint("upgrader", [upgrader.address], token=TOKEN),
            endpoint("ambiguous", [ambiguous.address], token=TOKEN),
        ]
        workdir: Path = tmp_path_factory.mktemp("hostile-gateway")
        with StandaloneGateway(workdir, endpoints) as running:
            running.honest = honest  # type: ignore[attr-defined]
            yield running


def test_a_body_hidden_from_the_framing_never_reaches_a_replica(
    hostile: StandaloneGateway,
) -> None:
    honest: Replica = hostile.honest  # type: ignore[attr-defined]
    smuggled = b"GET /path/smuggled HTTP/1.1\r\nX-Swallow: "
    with connect(hostile.port) as sock:
        sock.sendall(framing_attack(f"{PREFIX}svc/inspect", smuggled))
        answer = read_answer(sock)
    assert answer.status == 400, answer
    assert "content-length" in answer.json()["message"]
    for _ in range(3):
        victim = requests.get(hostile.url("svc", "hello"), headers=AUTH, timeout=10)
        assert victim.status_code == 200, victim.text
        assert victim.content == HELLO, victim.text
    assert "/path/smuggled" not in honest.paths


@pytest.mark.parametrize("padding", [b" ", b"\t"], ids=["space", "tab"])
def test_a_padded_content_length_reaches_the_replica_framed(
    hostile: StandaloneGateway, padding: bytes
) -> None:
    honest: Replica = hostile.honest  # type: ignore[attr-defined]
    smuggled = b"GET /path/padded HTTP/1.1\r\nX-Swallow: "
    with connect(hostile.port) as sock:
        sock.sendall(
            (
                f"POST {PREFIX}svc/inspect HTTP/1.1\r\nHost: moorage\r\n"
                f"Authorization: Bearer {TOKEN}\r\n"
            ).encode()
            + b"Content-Length: %d%b\r\n\r\n%b" % (len(smuggled), padding, smuggled)
        )
        answer = read_answer(sock)
    assert answer.status in (200, 400), answer
    if answer.status == 200:  # the replica got the body as a body, framed by its length
        seen = answer.json()
        assert seen["body_length"] == len(smuggled), seen
        assert seen["body_sha256"] == hashlib.sha256(smuggled).hexdigest(), seen
        assert ["content-length", str(len(smuggled))] in seen["headers"], seen
    for _ in range(3):
        victim = requests.get(hostile.url("svc", "hello"), headers=AUTH, timeout=10)
        assert victim.status_code == 200, victim.text
        assert victim.content == HELLO, victim.text
    assert "/path/padded" not in honest.paths


@pytest.mark.parametrize("hop", ["transfer-encoding", "host", "Content-Length, keep-alive"])
def test_connection_cannot_name_the_framing_headers(hostile: StandaloneGateway, hop: str) -> None:
    with connect(hostile.port) as sock:
        sock.sendall(framing_attack(f"{PREFIX}svc/inspect", b"abc", hop=hop))
        answer = read_answer(sock)
    assert answer.status == 400, answer
    assert answer.json()["code"] == "bad_request"


@pytest.mark.parametrize(
    "service", ["unframed", "upgrader", "ambiguous"], ids=["cl-dropped", "unrequested-101", "cl-te"]
)
def test_a_hostile_replica_response_is_a_502_and_the_connection_stays_clean(
    hostile: StandaloneGateway, service: str
) -> None:
    with RawClient(hostile) as client:
        client.send(client.request_bytes("GET", "anything", service=service))
        answer = client.read_response()
        assert answer.status == 502, answer
        assert answer.json()["code"] == "bad_replica_response"
        assert b"forged" not in answer.body
        # Whatever the replica sent after, the client connection carries nothing of it.
        try:
            client.send(client.request_bytes("GET", "hello", service="svc"))
            after = client.read_response()
        except (AssertionError, OSError):
            return  # the gateway closed the connection: clean too
        assert after.status == 200, after
        assert after.body == HELLO, after
