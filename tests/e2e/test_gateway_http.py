"""The standalone gateway as an HTTP/1.1 reverse proxy, seen from real clients.

A ``moorage gateway`` subprocess reads a route file pointing at a real replica
(``tests.support.backends.Replica``); clients are requests, httpx, aiohttp, or a
raw socket where the bytes on the wire are the point.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.backends import HELLO, Replica, pattern, pattern_sha256
from tests.support.gateway import PREFIX, StandaloneGateway, endpoint
from tests.support.server import wait_for

TOKEN = "gateway-test-token"
OTHER_TOKEN = "someone-elses-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def replica() -> Iterator[Replica]:
    with Replica() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(
    replica: Replica, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StandaloneGateway]:
    endpoints = [
        endpoint("svc", [replica.address], token=TOKEN),
        endpoint(
            "capped",
            [replica.address],
            token=TOKEN,
            max_concurrency=1,
            max_queue=5,
            queue_timeout_s=20,
        ),
        endpoint("theirs", [replica.address], token=OTHER_TOKEN),
    ]
    with StandaloneGateway(tmp_path_factory.mktemp("gateway"), endpoints) as running:
        yield running


# -- a client that speaks HTTP/1.1 byte by byte --------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]  # names lower-cased, in order
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """One TCP connection to the gateway; responses are read off it in order."""

    def __init__(
        self, gateway: StandaloneGateway, timeout: float = 15.0, receive_buffer: int = 0
    ) -> None:
        self.gateway = gateway
        self.sock = socket.socket()
        if receive_buffer:  # fixed, not grown by the kernel as data comes
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(("127.0.0.1", gateway.port))
        except OSError:
            self.sock.close()
            raise
        self.file = self.sock.makefile("rb")

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def request_bytes(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        version: str = "HTTP/1.1",
        service: str = "svc",
    ) -> bytes:
        lines = [
            f"{method} {PREFIX}{service}/{path} {version}",
            f"Host: 127.0.0.1:{self.gateway.port}",
        ]
        lines += [f"{name}: {value}" for name, value in {**AUTH, **(headers or {})}.items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_head(self) -> RawResponse:
        status_line = self.file.readline()
        assert status_line.startswith(b"HTTP/1."), f"not a status line: {status_line!r}"
        status = int(status_line.split()[1])
        headers: list[tuple[str, str]] = []
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return RawResponse(status, headers)

    def read_response(self, head_only: bool = False) -> RawResponse:
        response = self.read_head()
        length = response.header("content-length")
        if head_only or response.status < 200 or response.status in (204, 304):
            return response
        if "chunked" in (response.header("transfer-encoding") or ""):
            response.body = self._read_chunked()
        elif length is not None:
            response.body = self._read_exactly(int(length))
        else:
            response.body = self.file.read()  # delimited by the close
        return response

    def _read_exactly(self, size: int) -> bytes:
        data = self.file.read(size)
        assert len(data) == size, f"the body ended after {len(data)} of {size} bytes"
        return data

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.file.readline().split(b";")[0], 16)
            if size == 0:
                while self.file.readline() not in (b"\r\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self._read_exactly(size))
            assert self.file.readline() == b"\r\n"

    def closed_by_gateway(self) -> bool:
        """Whether the gateway closed the connection (end of stream, nothing more)."""
        return self.file.read() == b""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seen_headers(inspected: dict[str, Any]) -> dict[str, list[str]]:
    """The headers the replica received, by lower-cased name."""
    found: dict[str, list[str]] = {}
    for name, value in inspected["headers"]:
        found.setdefault(name.lower(), []).append(value)
    return found


def gauge(gateway: StandaloneGateway, name: str, service_id: str) -> float:
    """One endpoint's sample of a gauge on ``/metrics``, 0 when it has none."""
    text = requests.get(gateway.base + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == name:
            for sample in family.samples:
                if sample.labels.get("endpoint") == service_id:
                    return float(sample.value)
    return 0.0


def in_flight(gateway: StandaloneGateway, service_id: str) -> float:
    return gauge(gateway, "moorage_gateway_in_flight", service_id)


def queued(gateway: StandaloneGateway, service_id: str) -> float:
    return gauge(gateway, "moorage_gateway_queue_length", service_id)


def take_the_only_slot(client: RawClient) -> None:
    """Starts an endless stream on ``capped`` (one request at a time) on ``client``."""
    client.send(client.request_bytes("GET", "drip?interval=0.1", service="capped"))
    assert client.read_head().status == 200
    assert client.file.readline()  # the chunk size line of the first drip
    assert in_flight(client.gateway, "capped") == 1


# -- request bodies --------------------------------------------------------------------


def test_a_chunked_request_body_reaches_the_replica_whole_and_in_order(
    gateway: StandaloneGateway,
) -> None:
    pieces = [b"first piece;", b"second piece;", b"", b"x" * 70_000, *pattern(3_000_000, seed=1)]

    def body() -> Iterator[bytes]:
        for i, piece in enumerate(pieces):
            if i < 3:
                time.sleep(0.05)  # the first pieces leave in packets of their own
            yield piece

    response = requests.post(gateway.url("svc", "inspect"), data=body(), headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen_headers(seen)["transfer-encoding"] == ["chunked"]
    expected = b"".join(pieces)
    assert seen["body_length"] == len(expected)
    assert seen["body_sha256"] == sha256(expected)


def test_a_large_content_length_body_reaches_the_replica_intact(
    gateway: StandaloneGateway,
) -> None:
    body = b"".join(pattern(5_000_000, seed=2))
    response = requests.post(gateway.url("svc", "inspect"), data=body, headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen_headers(seen)["content-length"] == [str(len(body))]
    assert seen["body_length"] == len(body)
    assert seen["body_sha256"] == sha256(body)


def test_expect_100_continue_gets_continue_before_the_body_is_sent(
    gateway: StandaloneGateway,
) -> None:
    body = b"sent only after 100 Continue" * 1000
    with RawClient(gateway) as client:
        request = client.request_bytes("POST", "inspect", {"Expect": "100-continue"}, body)
        head, _, sent_body = request.partition(b"\r\n\r\n")
        client.send(head + b"\r\n\r\n")
        interim = client.read_head()  # waits: the body has not been sent
        assert interim.status == 100
        client.send(sent_body)
        response = client.read_response()
        assert response.status == 200
        seen = response.json()
        assert "expect" not in seen_headers(seen)
        assert seen["body_sha256"] == sha256(body)
        # The connection goes on.
        client.send(client.request_bytes("GET", "hello"))
        assert client.read_response().body == HELLO


def test_expect_100_continue_for_a_refused_request_gets_the_refusal_instead(
    gateway: StandaloneGateway,
) -> None:
    with RawClient(gateway) as client:
        request = client.request_bytes(
            "POST",
            "inspect",
            {"Authorization": "Bearer not-a-token", "Expect": "100-continue"},
            b"never sent" * 100,
        )
        client.send(request.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
        response = client.read_response()
        assert response.status == 401  # at once: no 100 Continue first, no body awaited
        assert response.json()["code"] == "unauthenticated"


# -- responses -------------------------------------------------------------------------


def test_head_has_the_replicas_headers_no_body_and_the_connection_goes_on(
    gateway: StandaloneGateway,
) -> None:
    with RawClient(gateway) as client:
        client.send(client.request_bytes("HEAD", "hello"))
        head = client.read_response(head_only=True)
        assert head.status == 200
        assert head.header("content-length") == str(len(HELLO))
        assert head.header("x-replica") == "yes"
        client.send(client.request_bytes("HEAD", "unsized"))
        unsized = client.read_response(head_only=True)
        assert unsized.status == 200
        # Any body bytes after either head would be read here instead of a status line.
        client.send(client.request_bytes("GET", "hello"))
        after = client.read_response()
        assert after.status == 200
        assert after.body == HELLO


def test_hop_by_hop_request_headers_and_the_token_stay_at_the_gateway(
    gateway: StandaloneGateway, replica: Replica
) -> None:
    headers = {
        **AUTH,
        "Connection": "keep-alive, X-Secret",
        "X-Secret": "1",
        "Keep-Alive": "timeout=5",
        "Proxy-Authorization": "Basic c2VjcmV0",
        "X-Forwarded-For": "203.0.113.7",
        "X-Kept": "yes",
    }
    response = requests.get(gateway.url("svc", "inspect"), headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    seen = seen_headers(response.json())
    for name in ("x-secret", "keep-alive", "proxy-authorization", "authorization"):
        assert name not in seen, f"{name} reached the replica"
    assert seen.get("connection", []) in ([], ["keep-alive"])
    assert seen["x-kept"] == ["yes"]
    assert seen["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [f"127.0.0.1:{gateway.port}"]
    assert seen["host"] == [replica.address]


def test_headers_named_in_any_connection_header_stay_at_the_gateway(
    gateway: StandaloneGateway,
) -> None:
    with RawClient(gateway) as client:
        client.send(
            client.request_bytes(
                "GET",
                "inspect",
                {"Connection": "X-First", "X-First": "1", "X-Second": "2", "X-Third": "3"},
            ).replace(b"X-Third: 3\r\n", b"X-Third: 3\r\nConnection: X-Second\r\n")
        )
        response = client.read_response()
    assert response.status == 200
    seen = seen_headers(response.json())
    assert "x-first" not in seen
    assert "x-second" not in seen
    assert seen["x-third"] == ["3"]


def test_hop_by_hop_response_headers_stay_at_the_gateway(
    gateway: StandaloneGateway, replica: Replica
) -> None:
    direct = requests.get(replica.url + "/hop", timeout=10)
    assert direct.headers["x-foo"] == "for the gateway only"  # the replica does send them
    assert direct.headers["x-bar"] == "for the gateway too"
    response = requests.get(gateway.url("svc", "hop"), headers=AUTH, timeout=30)
    assert response.status_code == 200
    assert response.content == b"hop"
    assert "x-foo" not in response.headers
    assert "x-bar" not in response.headers
    assert "keep-alive" not in response.headers
    assert response.headers["x-visible"] == "for the client"
    assert "x-foo" not in response.headers.get("connection", "").lower()


def test_server_sent_events_arrive_as_they_are_sent(gateway: StandaloneGateway) -> None:
    arrivals: list[tuple[float, dict[str, Any]]] = []
    with httpx.stream(
        "GET",
        gateway.url("svc", "sse"),
        params={"count": "5", "interval": "0.3"},
        headers=AUTH,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.monotonic(), json.loads(line[len("data: ") :])))
    assert [event["i"] for _, event in arrivals] == [0, 1, 2, 3, 4]
    first_arrived = arrivals[0][0]
    last_sent = arrivals[-1][1]["sent"]
    # Events 0.3 s apart: the first is read 1.2 s before the last exists, not with it.
    assert first_arrived < last_sent, (first_arrived, last_sent)


def test_pipelined_requests_are_answered_in_order(gateway: StandaloneGateway) -> None:
    with RawClient(gateway) as client:
        client.send(
            client.request_bytes("GET", "path/first?delay=0.3")
            + client.request_bytes("POST", "inspect", body=b"pipelined body")
            + client.request_bytes("GET", "path/third")
        )
        first = client.read_response()
        second = client.read_response()
        third = client.read_response()
    assert (first.status, first.body) == (200, b"/path/first?delay=0.3")
    assert second.status == 200
    assert second.json()["body_sha256"] == sha256(b"pipelined body")
    assert (third.status, third.body) == (200, b"/path/third")


@pytest.mark.parametrize(
    ("path", "body"),
    [("hello", HELLO), ("unsized", b"first,second,third")],
    ids=["with-length", "chunked-by-the-replica"],
)
def test_http10_client_gets_a_response_it_can_read_and_the_connection_closes(
    gateway: StandaloneGateway, path: str, body: bytes
) -> None:
    with RawClient(gateway) as client:
        client.send(client.request_bytes("GET", path, version="HTTP/1.0"))
        response = client.read_response()  # a body without a length ends at the close
        assert response.status == 200
        assert response.header("transfer-encoding") is None  # HTTP/1.0 has no chunking
        assert response.body == body
        length = response.header("content-length")
        assert length is None or int(length) == len(body)
        assert client.closed_by_gateway()


def read_body(client: RawClient, size: int, digest: Any, slowly: bool = False) -> None:
    """Reads ``size`` body bytes into ``digest``; ``slowly``: 64 KiB at a time, with pauses."""
    left = size
    while left:
        piece = client.file.read(min(65536 if slowly else 1 << 20, left))
        assert piece, f"the body ended after {size - left} of {size} bytes"
        digest.update(piece)
        left -= len(piece)
        if slowly:
            time.sleep(0.002)


def replica_stalls(replica: Replica, seed: int) -> int:
    """How much of ``/big?seed=...`` the replica wrote when it stopped writing."""

    def stalled() -> tuple[int] | None:
        before = replica.big_written.get(seed)
        time.sleep(0.5)
        return (before,) if before is not None and replica.big_written[seed] == before else None

    (written,) = wait_for(stalled, timeout=20, interval=0, what="the replica to stop writing")
    return int(written)


def _largest_socket_buffer(name: str, fallback: int) -> int:
    try:
        return int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return fallback


# What the kernel may hold for a client that reads nothing, past the replica's and the
# client's own small fixed buffers: the gateway's receive buffer from the replica and its
# send buffer to the client (each grows up to the system's maximum), and some slack. A
# replica that wrote more than this has written into the gateway's memory.
HELD_BY_SOCKETS = (
    _largest_socket_buffer("tcp_rmem", 32 << 20)
    + _largest_socket_buffer("tcp_wmem", 4 << 20)
    + (4 << 20)
)
LARGE = max(50_000_000, HELD_BY_SOCKETS + 10_000_000)


def test_a_response_larger_than_socket_buffers_is_held_back_for_a_slow_reader(
    gateway: StandaloneGateway, replica: Replica
) -> None:
    size = LARGE
    digest = hashlib.sha256()
    with RawClient(gateway, timeout=30, receive_buffer=1 << 18) as client:
        client.send(client.request_bytes("GET", f"big?size={size}&seed=7"))
        head = client.read_head()
        assert head.status == 200
        assert head.header("content-length") == str(size)
        read_body(client, 2_000_000, digest, slowly=True)
        written = replica_stalls(replica, seed=7)  # the client reads nothing meanwhile
        assert written < 2_000_000 + HELD_BY_SOCKETS, (written, size)
        read_body(client, size - 2_000_000, digest)
    assert digest.hexdigest() == pattern_sha256(size, seed=7)


def test_pipelined_large_responses_are_each_held_back_for_a_slow_reader(
    gateway: StandaloneGateway, replica: Replica
) -> None:
    first, second = 10_000_000, LARGE
    with RawClient(gateway, timeout=30, receive_buffer=1 << 18) as client:
        client.send(
            client.request_bytes("GET", f"big?size={first}&seed=11")
            + client.request_bytes("GET", f"big?size={second}&seed=12")
        )
        assert client.read_head().status == 200
        first_digest = hashlib.sha256()
        read_body(client, first, first_digest, slowly=True)
        written = replica_stalls(replica, seed=12)  # the client reads nothing meanwhile
        assert written < HELD_BY_SOCKETS, (written, second)
        assert client.read_head().status == 200
        second_digest = hashlib.sha256()
        read_body(client, second, second_digest)
    assert first_digest.hexdigest() == pattern_sha256(first, seed=11)
    assert second_digest.hexdigest() == pattern_sha256(second, seed=12)


# -- WebSocket -------------------------------------------------------------------------


def test_websocket_messages_pass_through_in_order_and_close(
    gateway: StandaloneGateway, replica: Replica
) -> None:
    messages: list[str | bytes] = [
        "one",
        b"\x00\x01\x02 two",
        "three " * 20_000,
        b"".join(pattern(300_000, seed=3)),
        "last",
    ]

    async def converse() -> tuple[list[str | bytes], int | None]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(gateway.url("svc", "ws"), headers=AUTH) as ws,
        ):
            for message in messages:
                if isinstance(message, str):
                    await ws.send_str(message)
                else:
                    await ws.send_bytes(message)
            echoed: list[str | bytes] = []
            for _ in messages:
                reply = await ws.receive(timeout=15)
                assert reply.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), reply
                echoed.append(reply.data)
            await ws.close()
            return echoed, ws.close_code

    closes_before = len(replica.websocket_closes)
    echoed, close_code = asyncio.run(asyncio.wait_for(converse(), 30))
    assert echoed == messages
    assert close_code == 1000
    wait_for(
        lambda: 1000 in replica.websocket_closes[closes_before:],
        timeout=10,
        what="the replica to see a normal close",
    )


def masked_text_frame(text: str) -> bytes:
    """A client's WebSocket text frame (clients must mask; ``text`` under 126 bytes)."""
    payload = text.encode()
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def test_websocket_handshake_answer_and_a_frame_sent_right_behind_the_handshake(
    gateway: StandaloneGateway,
) -> None:
    with RawClient(gateway) as client:
        handshake = client.request_bytes(
            "GET",
            "ws",
            {
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
        )
        client.send(handshake + masked_text_frame("sent with the handshake"))
        head = client.read_head()
        assert head.status == 101
        assert head.header("upgrade") == "websocket"
        assert head.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        tokens = {t.strip().lower() for v in head.all("connection") for t in v.split(",")}
        assert tokens == {"upgrade"}  # one that also says "close" breaks some clients
        echo = b"sent with the handshake"
        assert client.file.read(2 + len(echo)) == bytes([0x81, len(echo)]) + echo


# -- clients that go away, and requests the gateway refuses ----------------------------


def test_a_client_leaving_mid_stream_frees_the_replicas_slot(
    gateway: StandaloneGateway, replica: Replica
) -> None:
    drips_before = len(replica.drips)
    with RawClient(gateway) as client:
        take_the_only_slot(client)
    # The client is gone: the slot is free, so this is served, not queued.
    started = time.monotonic()
    response = requests.get(gateway.url("capped", "hello"), headers=AUTH, timeout=15)
    assert response.status_code == 200
    assert response.content == HELLO
    assert time.monotonic() - started < 10
    assert in_flight(gateway, "capped") == 0
    # And the replica's stream was cut, not left running for nobody.
    wait_for(
        lambda: len(replica.drips) >= drips_before + 2,
        timeout=10,
        what="the replica's stream to end",
    )
    assert replica.drips[drips_before] == "started"
    assert replica.drips[drips_before + 1].startswith("ended: ")
    assert replica.drips[drips_before + 1] != "ended: ran out"


def test_a_client_leaving_while_queued_gives_up_its_place(
    gateway: StandaloneGateway, replica: Replica
) -> None:
    with RawClient(gateway) as holder:
        take_the_only_slot(holder)
        with RawClient(gateway) as waiter:
            waiter.send(waiter.request_bytes("GET", "path/queued-then-gone", service="capped"))
            wait_for(lambda: queued(gateway, "capped") == 1, timeout=10, what="it to queue")
        wait_for(lambda: queued(gateway, "capped") == 0, timeout=10, what="it to leave")
    response = requests.get(gateway.url("capped", "path/after"), headers=AUTH, timeout=15)
    assert response.status_code == 200
    assert response.content == b"/path/after"
    assert "/path/queued-then-gone" not in replica.paths  # nobody was waiting for it


def test_a_body_sent_while_waiting_for_a_slot_arrives_whole(gateway: StandaloneGateway) -> None:
    body = b"".join(pattern(3_000_000, seed=5))  # more than the gateway holds for a waiter
    with ThreadPoolExecutor(1) as pool:
        with RawClient(gateway) as holder:
            take_the_only_slot(holder)
            posted = pool.submit(
                requests.post,
                gateway.url("capped", "inspect"),
                data=body,
                headers=AUTH,
                timeout=30,
            )
            wait_for(lambda: queued(gateway, "capped") == 1, timeout=10, what="it to queue")
        response = posted.result(timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["body_length"] == len(body)
    assert response.json()["body_sha256"] == sha256(body)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
    ],
    ids=["tls-hello", "bad-header"],
)
def test_a_malformed_request_gets_400_and_the_connection_closes(
    gateway: StandaloneGateway, garbage: bytes
) -> None:
    with RawClient(gateway) as client:
        client.send(garbage)
        response = client.read_response()
        assert response.status == 400
        assert response.header("content-type") == "application/json"
        body = response.json()
        assert body["code"] == "bad_request"
        assert isinstance(body["message"], str)
        assert body["message"]
        assert client.closed_by_gateway()


def test_missing_or_wrong_token_gets_401(gateway: StandaloneGateway) -> None:
    url = gateway.url("svc", "hello")
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": TOKEN}):
        response = requests.get(url, headers=headers, timeout=30)
        assert response.status_code == 401, headers
        assert response.json()["code"] == "unauthenticated"
        assert response.json()["message"]


def test_unknown_or_someone_elses_endpoint_gets_404(gateway: StandaloneGateway) -> None:
    theirs = requests.get(gateway.url("theirs", "hello"), headers=AUTH, timeout=30)
    assert theirs.status_code == 404
    assert theirs.json()["code"] == "not_found"
    unknown = requests.get(gateway.url("no-such-endpoint", "hello"), headers=AUTH, timeout=30)
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not_found"
    assert "no-such-endpoint" in unknown.json()["message"]
    # Their owner still gets through.
    mine = requests.get(
        gateway.url("theirs", "hello"),
        headers={"Authorization": f"Bearer {OTHER_TOKEN}"},
        timeout=30,
    )
    assert mine.status_code == 200
