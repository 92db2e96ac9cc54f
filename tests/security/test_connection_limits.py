"""Connections are capped per client address and in total, so no one address can run
``moorage serve`` out of open files.

Before: 7,000 connections trickling an API body from one address (three open files
each: the client's socket, the gateway's to the API, the API's own) left the server
with none: ``/healthz`` went unanswered, API calls and replicas answered 502, and the
controller's pass failed with EMFILE.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.backends import Replica
from tests.support.gateway import PREFIX, StandaloneGateway, endpoint
from tests.support.raw_http import TOKEN, RawResponse, read_answer
from tests.support.server import ApiClient, MoorageServer, wait_for

# What this module checks is the gateway's front door, the same over either store.
STORES = ["sqlite"]
PER_CLIENT = 30
SERVER_ENV = {
    "MOORAGE_GATEWAY_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
    # Long enough that the trickled bodies below are cut by nothing but the cap.
    "MOORAGE_API_BODY_TIMEOUT_S": "300",
}
ATTACKERS = 150
SLOW_BODY = b"POST /v1/inference-service HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n{"


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect_from(source: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` from ``source`` (any 127.x address is
    this host's loopback on Linux): another address, as far as the server knows."""
    sock = socket.socket()
    sock.settimeout(timeout)
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def ask(source: str, port: int, request: bytes) -> RawResponse:
    with connect_from(source, port) as sock:
        sock.sendall(request)
        return read_answer(sock)


def closed_by_server(sock: socket.socket) -> bool:
    """The server answered (a refusal) or closed this connection."""
    sock.setblocking(False)
    try:
        return sock.recv(65536, socket.MSG_PEEK) is not None
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.fixture(scope="module")
def bobs_endpoint(bob: ApiClient) -> str:
    """Bob's endpoint, ready before any attack begins."""
    service_id: str = bob.create(name="bobs")["service_id"]
    bob.wait_status(service_id, "available", timeout=120)
    return service_id


def inference_get(token: str, service_id: str, path: str = "") -> bytes:
    return (
        b"GET %b%b/%b HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer %b\r\n"
        b"Connection: close\r\n\r\n"
        % (PREFIX.encode(), service_id.encode(), path.encode(), token.encode())
    )


@pytest.fixture
def attack(server: MoorageServer, bobs_endpoint: str) -> Iterator[list[socket.socket]]:
    """``ATTACKERS`` connections from 127.0.0.1, each holding an API body open."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(ATTACKERS):
            with contextlib.suppress(OSError):  # refused at once: that is the point
                sock = connect_from("127.0.0.1", server.port)
                sockets.append(sock)
                sock.sendall(SLOW_BODY)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_one_address_cannot_take_every_connection(
    server: MoorageServer,
    alice: ApiClient,
    bob: ApiClient,
    bobs_endpoint: str,
    attack: list[socket.socket],
) -> None:
    assert server.process is not None
    refused = wait_for(
        lambda: (n := sum(closed_by_server(s) for s in attack)) >= ATTACKERS - PER_CLIENT and n,
        timeout=20,
        what="the connections past the per-client cap to be refused",
    )
    assert refused <= ATTACKERS - PER_CLIENT, "connections under the cap were refused"
    # Each held connection costs three files (client, gateway to API, API side); the
    # cap bounds them, whatever the attacker opens.
    assert open_files(server.process.pid) < 3 * PER_CLIENT + 150
    # Another address is served meanwhile: the health check, the API, a replica.
    started = time.monotonic()
    health = ask("127.0.0.2", server.port, b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
    assert health.status == 200
    listing = ask(
        "127.0.0.2",
        server.port,
        b"GET /v1/inference-service HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer %b\r\n"
        b"Connection: close\r\n\r\n" % alice.token.encode(),
    )
    assert listing.status == 200, listing
    served = ask("127.0.0.2", server.port, inference_get(bob.token, bobs_endpoint))
    assert served.status == 200, served
    assert time.monotonic() - started < 5
    # The controller kept its files too: bob's replica is still in rotation.
    status = ask(
        "127.0.0.2",
        server.port,
        b"GET /v1/inference-service/%b HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer %b\r\n"
        b"Connection: close\r\n\r\n" % (bobs_endpoint.encode(), bob.token.encode()),
    )
    assert status.json()["status"] == "available", status


def test_a_refusal_is_a_short_503_naming_the_setting(
    server: MoorageServer, attack: list[socket.socket]
) -> None:
    # The attack holds the per-client cap: one more from that address is refused.
    with connect_from("127.0.0.1", server.port) as sock:
        answer = read_answer(sock)
    assert answer.status == 503, answer
    assert answer.header("connection") == "close"
    assert "MOORAGE_GATEWAY_MAX_CONNECTIONS_PER_CLIENT" in answer.json()["message"]
    # And the refusals are logged once per address, not once per connection.
    wait_for(
        lambda: "MOORAGE_GATEWAY_MAX_CONNECTIONS_PER_CLIENT" in server.log(),
        timeout=10,
        what="the refusal in the log",
    )
    # (Both tests here had well over a hundred connections refused.)
    assert server.log().count("MOORAGE_GATEWAY_MAX_CONNECTIONS_PER_CLIENT") <= 2


# -- the total cap, on a standalone gateway -------------------------------------------


def test_past_the_total_cap_every_address_is_refused_until_one_closes(
    tmp_path: Path,
) -> None:
    with Replica() as replica:
        routes = [endpoint("svc", [replica.address], token=TOKEN)]
        args = ["--max-connections", "10", "--max-connections-per-client", "6"]
        with StandaloneGateway(tmp_path, routes, args=args) as gateway:
            held: list[socket.socket] = []
            try:
                for source in ("127.0.0.1",) * 6 + ("127.0.0.3",) * 4:
                    held.append(connect_from(source, gateway.port))
                # Reached the total: another address is refused too, naming the setting.
                wait_for(
                    lambda: refused_answer(gateway.port).status == 503,
                    timeout=10,
                    what="a refusal past the total cap",
                )
                answer = refused_answer(gateway.port)
                assert "MOORAGE_GATEWAY_MAX_CONNECTIONS)" in answer.json()["message"]
                held.pop().close()
                served: Any = wait_for(
                    lambda: (
                        (
                            a := ask(
                                "127.0.0.2", gateway.port, inference_get(TOKEN, "svc", "hello")
                            )
                        ).status
                        == 200
                        and a
                    ),
                    timeout=10,
                    what="a slot freed by a closed connection",
                )
                assert served.status == 200
            finally:
                for sock in held:
                    sock.close()


def refused_answer(port: int) -> RawResponse:
    with connect_from("127.0.0.2", port) as sock:
        return read_answer(sock)
