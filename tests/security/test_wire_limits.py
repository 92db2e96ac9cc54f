"""Size and time limits on the wire: big or slow inputs are refused before they cost
memory or time, and everyone else is served meanwhile.

Before: a 64 MiB header with no token stalled the whole ``moorage serve`` process
(gateway, API and controller) for seconds and grew its memory; the API took any body
size; a slow body to the API was never timed out.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.backends import Replica
from tests.support.gateway import PREFIX, StandaloneGateway, endpoint
from tests.support.raw_http import AUTH, TOKEN, ScriptedReplica, connect, read_answer
from tests.support.resilience_backends import Backend
from tests.support.server import ApiClient, MoorageServer, wait_for

# What this module checks is the gateway's limits, the same over either store.
STORES = ["sqlite"]
SERVER_ENV = {
    "MOORAGE_GATEWAY_HEADER_TIMEOUT_S": "2",
    "MOORAGE_GATEWAY_BODY_TIMEOUT_S": "2",
    "MOORAGE_API_BODY_TIMEOUT_S": "4",
}
MIB = 1 << 20


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def refusal(port: int, data: bytes) -> tuple[int, dict[str, str]]:
    with connect(port) as sock:
        with contextlib.suppress(OSError):  # refused mid-send: the answer is waiting
            sock.sendall(data)
        answer = read_answer(sock)
    return answer.status, answer.json()


def assert_names_setting(body: dict[str, str], setting: str) -> None:
    assert set(body) == {"code", "message"}, body
    assert setting in body["message"], body


def test_a_64_mib_header_is_refused_fast_while_others_are_served(
    server: MoorageServer, alice: ApiClient
) -> None:
    assert server.process is not None
    pid = server.process.pid
    before = rss_kib(pid)
    sending = threading.Event()
    result: dict[str, object] = {}

    def attack() -> None:
        with connect(server.port, timeout=30) as sock:
            started = time.monotonic()
            try:
                sock.sendall(b"GET /v1/inference-service HTTP/1.1\r\nHost: x\r\nX-Big: ")
                sending.set()
                block = b"a" * MIB
                for _ in range(64):
                    sock.sendall(block)
                sock.sendall(b"\r\n\r\n")
            except OSError:
                pass
            try:
                result["status"] = read_answer(sock).status
            except (OSError, AssertionError) as exc:
                result["status"] = repr(exc)
            result["seconds"] = time.monotonic() - started

    attacker = threading.Thread(target=attack)
    attacker.start()
    try:
        assert sending.wait(10)
        started = time.monotonic()
        served = alice.call("GET", "/v1/inference-service")
        assert served.status_code == 200, served.text
        assert time.monotonic() - started < 2.0, "another user waited on the attack"
    finally:
        attacker.join(60)
    assert result["status"] == 431, result
    assert isinstance(result["seconds"], float), result
    assert result["seconds"] < 5, result
    assert rss_kib(pid) - before < 32 * 1024, "the server's memory grew with the header"


def test_each_header_and_the_url_have_limits(server: MoorageServer, alice: ApiClient) -> None:
    status, body = refusal(
        server.port, b"GET /v1/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert status == 414
    assert_names_setting(body, "MOORAGE_GATEWAY_MAX_URL_BYTES")
    status, body = refusal(
        server.port, b"GET /v1/x HTTP/1.1\r\nHost: x\r\nX-One: " + b"a" * 20000 + b"\r\n\r\n"
    )
    assert status == 431
    assert_names_setting(body, "MOORAGE_GATEWAY_MAX_HEADER_BYTES")
    many = b"".join(b"X-H%d: %b\r\n" % (i, b"a" * 1000) for i in range(80))
    status, body = refusal(server.port, b"GET /v1/x HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert status == 431
    assert_names_setting(body, "MOORAGE_GATEWAY_MAX_HEAD_BYTES")
    assert alice.call("GET", "/v1/inference-service").status_code == 200


def test_an_over_limit_body_to_the_api_is_refused_unread(
    server: MoorageServer, alice: ApiClient
) -> None:
    # Only the head is sent: an answer proves the gateway did not wait for the body,
    # so the API never saw it.
    head = (
        f"POST /v1/inference-service HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        f"{alice.token}\r\nContent-Type: application/json\r\nContent-Length: {2 * MIB}\r\n\r\n"
    ).encode()
    status, body = refusal(server.port, head)
    assert status == 413
    assert_names_setting(body, "MOORAGE_API_MAX_BODY_BYTES")
    # Chunked, the size is learned on the way: refused as it passes the limit.
    chunked = requests.post(
        server.url + "/v1/inference-service",
        headers={**alice.headers, "Content-Type": "application/json"},
        data=iter([b"a" * 65536] * 32),
        timeout=30,
    )
    assert chunked.status_code == 413, chunked.text
    assert alice.call("GET", "/v1/inference-service").status_code == 200


def test_a_slow_body_to_the_api_times_out(server: MoorageServer, alice: ApiClient) -> None:
    with connect(server.port, timeout=20) as sock:
        sock.sendall(
            b"POST /v1/inference-service HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        answer = read_answer(sock)
        assert answer.status == 408, answer
        assert_names_setting(answer.json(), "MOORAGE_GATEWAY_BODY_TIMEOUT_S")
        assert time.monotonic() - started < 10
    assert alice.call("GET", "/v1/inference-service").status_code == 200


def test_a_trickled_api_body_is_cut_at_its_deadline(
    server: MoorageServer, alice: ApiClient
) -> None:
    """One byte a second never pauses long enough for the body timeout; the API body's
    own deadline cuts it, so a trickle cannot hold a connection (and its open files)."""
    with connect(server.port, timeout=20) as sock:
        sock.sendall(
            b"POST /v1/inference-service HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{"
        )
        started = time.monotonic()
        while time.monotonic() - started < 15 and not select.select([sock], [], [], 1.0)[0]:
            with contextlib.suppress(OSError):
                sock.sendall(b" ")
        answer = read_answer(sock)
        assert answer.status == 408, answer
        assert_names_setting(answer.json(), "MOORAGE_API_BODY_TIMEOUT_S")
        assert 3.5 < time.monotonic() - started < 8
    assert alice.call("GET", "/v1/inference-service").status_code == 200


def test_a_slow_head_times_out(server: MoorageServer, alice: ApiClient) -> None:
    with connect(server.port, timeout=20) as sock:
        sock.sendall(b"GET /v1/inference-service HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answer = read_answer(sock)
        assert answer.status == 408, answer
        assert_names_setting(answer.json(), "MOORAGE_GATEWAY_HEADER_TIMEOUT_S")
        assert time.monotonic() - started < 10
        assert sock.recv(1) == b""  # and the connection is closed
    assert alice.call("GET", "/v1/inference-service").status_code == 200


# -- the inference path, on a standalone gateway ---------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneGateway]:
    with Replica() as replica:
        endpoints = [endpoint("svc", [replica.address], token=TOKEN)]
        with StandaloneGateway(
            tmp_path_factory.mktemp("limited-gateway"),
            endpoints,
            args=["--max-body-bytes", str(MIB), "--max-head-bytes", "8192"],
        ) as running:
            yield running


def test_the_inference_body_limit(limited: StandaloneGateway) -> None:
    url = limited.url("svc", "inspect")
    small = requests.post(url, headers=AUTH, data=b"a" * 1000, timeout=10)
    assert small.status_code == 200
    assert small.json()["body_length"] == 1000
    big = requests.post(url, headers=AUTH, data=b"a" * (2 * MIB), timeout=10)
    assert big.status_code == 413
    assert_names_setting(big.json(), "MOORAGE_GATEWAY_MAX_BODY_BYTES")
    chunked = requests.post(url, headers=AUTH, data=iter([b"a" * 65536] * 40), timeout=10)
    assert chunked.status_code == 413, chunked.text
    assert requests.get(limited.url("svc", "hello"), headers=AUTH, timeout=10).status_code == 200


def test_the_standalone_gateway_head_limit_is_an_option(limited: StandaloneGateway) -> None:
    status, body = refusal(
        limited.port,
        f"GET {PREFIX}svc/hello HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 9000}\r\n\r\n".encode(),
    )
    assert status == 431
    assert_names_setting(body, "MOORAGE_GATEWAY_MAX_HEAD_BYTES")
    wait_for(
        lambda: requests.get(limited.url("svc", "hello"), headers=AUTH, timeout=5).ok,
        timeout=10,
        what="the gateway to serve after the refusal",
    )


def test_pipelined_small_requests_are_not_taken_for_a_big_head(
    limited: StandaloneGateway,
) -> None:
    one = f"GET {PREFIX}svc/hello HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    count = 8192 * 4 // len(one) + 1
    with connect(limited.port) as sock:
        sock.sendall(one.encode() * count)
        sock.settimeout(10)
        for _ in range(count):
            assert read_answer_keepalive(sock).status == 200


_buffered: dict[int, bytes] = {}


def read_answer_keepalive(sock: socket.socket) -> RawAnswer:
    data = _buffered.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, "closed"
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += sock.recv(65536)
    _buffered[sock.fileno()] = rest[length:]
    return RawAnswer(int(head.split()[1]))


class RawAnswer:
    def __init__(self, status: int) -> None:
        self.status = status


def test_a_body_past_the_retry_buffer_is_not_replayed(tmp_path: Path) -> None:
    """The retry buffer bounds what one request may keep in memory for a replay: a PUT
    past it that meets a replica hanging up gets a 502 instead of a replay."""
    retry = {"X-Moorage-Retry-On": "reset", **AUTH}
    with (
        Backend("hangs-up", hang_up=True) as hangs_up,
        Backend("good") as good,
    ):
        routes = [
            endpoint("flaky", [hangs_up.address, good.address], token=TOKEN, policy="round_robin")
        ]
        with StandaloneGateway(tmp_path, routes, args=["--retry-buffer-bytes", "1024"]) as gw:
            small, big = b"s" * 1000, b"b" * 5000
            answers: dict[int, list[int]] = {}
            for body in (small, small, big, big):
                answer = requests.put(gw.url("flaky", "x"), data=body, headers=retry, timeout=20)
                answers.setdefault(len(body), []).append(answer.status_code)
            assert answers[1000] == [200, 200], answers  # replayed within the buffer
            assert sorted(answers[5000]) == [200, 502], answers  # past it: not replayed
            assert good.count() == 3


def _endless_head(head: bytes) -> Iterator[bytes]:
    """A hostile replica's answer: a head that never ends, one small piece after
    another (``X-Big: vvvv...``), until the gateway hangs up (or 64 MiB)."""
    yield b"HTTP/1.1 200 OK\r\nX-Big: "
    for _ in range(64 * MIB // 512):
        yield b"v" * 512


def test_a_replica_head_that_never_ends_is_cut_at_the_head_limit(tmp_path: Path) -> None:
    """A replica's endless response head once kept growing in the gateway's memory, at
    a cost that grew with its square, while every other request waited."""
    with ScriptedReplica(_endless_head) as dripping, Replica() as honest:
        routes = [
            endpoint("dripping", [dripping.address], token=TOKEN),
            endpoint("honest", [honest.address], token=TOKEN),
        ]
        with StandaloneGateway(tmp_path, routes, args=["--max-head-bytes", "65536"]) as gw:
            started = time.monotonic()
            answer = requests.get(gw.url("dripping", "x"), headers=AUTH, timeout=30)
            assert answer.status_code == 502, answer.text
            assert answer.json()["code"] == "bad_replica_response"
            assert "65536" in answer.json()["message"]
            assert time.monotonic() - started < 10
            # The replica was cut off near the limit, not after megabytes.
            wait_for(lambda: bool(dripping.sent), timeout=10, what="the replica to be cut off")
            assert dripping.sent[0] < 4 * MIB, dripping.sent
            assert requests.get(gw.url("honest", "hello"), headers=AUTH, timeout=10).ok
