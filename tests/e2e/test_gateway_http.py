"""The standalone gateway as an HTTP/1.1 reverse proxy, seen from real clients.

A ``moorage gateway`` subprocess reads a route file pointing at a real replica
(``tests.support.backends.Replica``); clients are requests, httpx, aiohttp, or a
raw socket where the bytes on the wire are the point.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.support.backends import HELLO, Replica, pattern
from tests.support.gateway import StandaloneGateway
from tests.support.raw_http import (
    AUTH,
    OTHER_TOKEN,
    TOKEN,
    RawClient,
    seen_headers,
    sha256,
)


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
