"""The gateway's own framing of requests, its limits, and replica addresses of every form
(``host:port``, ``[v6]:port``, ``unix:/path``) carried unchanged from table to socket."""

from __future__ import annotations

import asyncio
import random
import tempfile
from pathlib import Path

import httptools
import pytest

from moorage import refusals
from moorage.gateway.dispatch import Dispatcher
from moorage.gateway.http1.limits import WireLimits
from moorage.gateway.http1.request import Request
from moorage.gateway.http1.upstream import UpstreamPool
from moorage.models.endpoints import GatewaySettings
from moorage.models.states import DesiredState
from moorage.routing.codec import table_from_json, table_to_json
from moorage.routing.table import EndpointRoute, ReplicaRoute, RouteTable

UNIX = "unix:/run/moorage/replicas/r1/sock/replica.sock"


def parsed(*headers: tuple[bytes, bytes]) -> Request:
    request = Request()
    request.method = b"POST"
    for name, value in headers:
        request.add_header(name, value)
    return request


def head_of(request: Request) -> bytes:
    return request.upstream_head(b"/x", b"replica", frozenset({b"host"}), b"10.0.0.1")


def test_the_gateway_writes_content_length_itself() -> None:
    request = parsed((b"Host", b"h"), (b"Content-Length", b"5"), (b"X-Other", b"1"))
    head = head_of(request)
    assert head.lower().count(b"content-length") == 1
    assert b"content-length: 5\r\n" in head
    assert not request.problem


def test_a_chunked_body_goes_out_chunked_without_a_length() -> None:
    head = head_of(parsed((b"Host", b"h"), (b"Transfer-Encoding", b"chunked")))
    assert b"transfer-encoding: chunked\r\n" in head
    assert b"content-length" not in head.lower()


def test_no_body_means_no_framing_header() -> None:
    head = head_of(parsed((b"Host", b"h")))
    assert b"content-length" not in head.lower()
    assert b"transfer-encoding" not in head.lower()


@pytest.mark.parametrize("named", [b"content-length", b"Transfer-Encoding", b"host"])
def test_connection_may_not_name_a_framing_header(named: bytes) -> None:
    request = parsed(
        (b"Host", b"h"), (b"Content-Length", b"3"), (b"Connection", b"keep-alive, " + named)
    )
    assert named.lower().decode() in request.problem
    # and even if it were forwarded, the length the gateway read is what goes out
    assert b"content-length: 3\r\n" in head_of(request)


def test_two_hosts_are_a_problem_one_is_not() -> None:
    assert not parsed((b"Host", b"a")).problem
    assert "Host" in parsed((b"Host", b"a"), (b"host", b"a")).problem


def test_refusals_name_their_setting() -> None:
    limits = WireLimits()
    for refusal, status in (
        (refusals.url_too_long(limits.max_url_bytes), 414),
        (refusals.header_too_large(limits.max_header_bytes), 431),
        (refusals.headers_too_large(limits.max_head_bytes), 431),
        (refusals.header_timeout(limits.header_timeout_s), 408),
        (refusals.body_timeout(limits.body_timeout_s), 408),
    ):
        assert refusal.status_code == status
        assert "MOORAGE_GATEWAY_" in refusal.message
    too_large = refusals.body_too_large(5, "MOORAGE_API_MAX_BODY_BYTES")
    assert (too_large.status_code, too_large.code) == (413, "body_too_large")
    assert "MOORAGE_API_MAX_BODY_BYTES" in too_large.message


def test_llhttp_refuses_ambiguous_framing_itself() -> None:
    """The gateway relies on its parser for these two: keep that true across upgrades."""

    class Sink:
        pass

    for raw in (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    ):
        with pytest.raises(httptools.HttpParserError):
            httptools.HttpRequestParser(Sink()).feed_data(raw)


# -- addresses -------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1:8000", "[::1]:8000", UNIX])
def test_replica_addresses_of_every_form_survive_the_json_table(address: str) -> None:
    table = RouteTable(
        {"ep": EndpointRoute("ep", frozenset({"h"}), (ReplicaRoute("r1", address),))},
        frozenset({"h"}),
    )
    again = table_from_json(table_to_json(table), "test")
    assert again.endpoints["ep"].replicas[0].address == address
    assert again.endpoints["ep"].replicas[0] == table.endpoints["ep"].replicas[0]


def test_the_host_header_for_a_unix_socket_is_localhost() -> None:
    assert ReplicaRoute("r", UNIX).host == b"localhost"
    assert ReplicaRoute("r", "127.0.0.1:9").host == b"127.0.0.1:9"


def test_the_dispatcher_leases_unix_addresses_unchanged() -> None:
    current = EndpointRoute(
        "ep", frozenset(), (ReplicaRoute("r1", UNIX),), DesiredState.RUNNING, GatewaySettings()
    )
    lease = Dispatcher(lambda _s: current, random.Random(1)).try_acquire(current)
    assert lease is not None
    assert lease.replica.address == UNIX
    lease.release()


def test_the_upstream_pool_opens_unix_sockets() -> None:
    async def scenario(path: str) -> bytes:
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            received.set_result(await reader.readuntil(b"\r\n\r\n"))
            writer.close()

        server = await asyncio.start_unix_server(handle, path)
        try:
            connection = await UpstreamPool().open(f"unix:{path}")
            assert connection.address == f"unix:{path}"
            connection.write(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
            data = await asyncio.wait_for(received, 5)
            connection.close()
            return data
        finally:
            server.close()

    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "replica.sock")
        assert asyncio.run(scenario(path)).startswith(b"GET / HTTP/1.1")
