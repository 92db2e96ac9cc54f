"""Streams through the standalone gateway: SSE, WebSocket, responses larger than socket
buffers for slow readers, and clients that leave mid-stream or while queued."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import requests

from tests.support.backends import HELLO, Replica, pattern, pattern_sha256
from tests.support.gateway import StandaloneGateway
from tests.support.raw_http import (
    AUTH,
    RawClient,
    in_flight,
    queued,
    sha256,
    take_the_only_slot,
)
from tests.support.server import wait_for

# What this module checks is the gateway's streaming, the same over either store.
STORES = ["sqlite"]


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
