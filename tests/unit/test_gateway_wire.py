"""What the gateway sends a replica, and the route table as the control plane ships it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage.errors import MoorageError
from moorage.gateway.http1.request import Request
from moorage.gateway.router import bearer_token
from moorage.models.endpoints import GatewaySettings
from moorage.models.states import DesiredState
from moorage.routing.codec import table_from_json, table_to_json
from moorage.routing.table import EndpointRoute, ReplicaRoute, RouteTable

DROPPED = frozenset({b"authorization", b"host", b"x-moorage-retry-on"})


def request(*headers: tuple[bytes, bytes], method: bytes = b"GET") -> Request:
    parsed = Request()
    parsed.method = method
    for name, value in headers:
        parsed.add_header(name, value)
    return parsed


def head_lines(head: bytes) -> list[bytes]:
    assert head.endswith(b"\r\n\r\n")
    return head[:-4].split(b"\r\n")


def header_names(head: bytes) -> list[bytes]:
    return [line.split(b":", 1)[0] for line in head_lines(head)[1:]]


def test_the_token_and_hop_by_hop_headers_stay_at_the_gateway() -> None:
    parsed = request(
        (b"Host", b"gw.example"),
        (b"Authorization", b"Bearer secret"),
        (b"Connection", b"keep-alive, X-Private"),
        (b"X-Private", b"1"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Proxy-Authorization", b"Basic x"),
        (b"TE", b"trailers"),
        (b"X-Moorage-Retry-On", b"reset"),
        (b"Accept", b"text/event-stream"),
    )
    head = parsed.upstream_head(b"/v1/chat", b"10.0.0.5:8000", DROPPED, b"192.0.2.7")
    lines = head_lines(head)
    assert lines[0] == b"GET /v1/chat HTTP/1.1"
    assert lines[1] == b"host: 10.0.0.5:8000"
    names = header_names(head)
    for gone in (
        b"authorization",
        b"connection",
        b"x-private",
        b"keep-alive",
        b"proxy-authorization",
        b"te",
        b"x-moorage-retry-on",
    ):
        assert gone not in names
    assert b"accept: text/event-stream" in lines
    assert b"x-forwarded-for: 192.0.2.7" in lines
    assert b"x-forwarded-proto: http" in lines
    assert b"x-forwarded-host: gw.example" in lines


def test_forwarded_for_is_appended_to_and_body_framing_follows_the_client() -> None:
    chunked = request(
        (b"X-Forwarded-For", b"203.0.113.1"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Expect", b"100-continue"),
        method=b"POST",
    )
    lines = head_lines(chunked.upstream_head(b"/", b"r:1", DROPPED, b"192.0.2.7"))
    assert b"x-forwarded-for: 203.0.113.1, 192.0.2.7" in lines
    assert lines.count(b"transfer-encoding: chunked") == 1
    assert not any(line.startswith(b"expect") for line in lines)  # answered by the gateway
    sized = request((b"Content-Length", b"42"), method=b"POST")
    assert b"content-length: 42" in head_lines(sized.upstream_head(b"/", b"r:1", DROPPED, b"p"))


def test_an_upgrade_keeps_its_upgrade_headers() -> None:
    parsed = request((b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"))
    assert parsed.upgrade
    lines = head_lines(parsed.upstream_head(b"/ws", b"r:1", DROPPED, b"p"))
    assert b"connection: upgrade" in lines
    assert b"upgrade: websocket" in lines


@pytest.mark.parametrize(
    ("method", "retry_on", "replayable"),
    [
        (b"GET", b"reset", True),
        (b"PUT", b"reset", True),
        (b"GET", None, True),
        (b"HEAD", None, True),
        (b"GET", b"none", False),
        (b"PUT", None, False),
        (b"DELETE", None, False),
        (b"POST", b"reset", False),
        (b"POST", None, False),
    ],
)
def test_safe_requests_and_idempotent_ones_that_opted_in_may_be_replayed(
    method: bytes, retry_on: bytes | None, replayable: bool
) -> None:
    headers = [(b"X-Moorage-Retry-On", retry_on)] if retry_on is not None else []
    assert request(*headers, method=method).replayable is replayable


@pytest.mark.parametrize(
    ("header", "token"),
    [(b"Bearer abc", "abc"), (b"bearer  abc ", "abc"), (b"Basic abc", None), (b"", None)],
)
def test_bearer_tokens(header: bytes, token: str | None) -> None:
    assert bearer_token(header) == token


def table() -> RouteTable:
    route = EndpointRoute(
        "ep1",
        frozenset({"d1"}),
        (ReplicaRoute("r1", "127.0.0.1:9001"),),
        DesiredState.RUNNING,
        GatewaySettings(max_concurrency=2, idle_timeout_s=600.0),
    )
    return RouteTable({"ep1": route}, frozenset({"d1", "d2"}))


def test_the_route_table_survives_the_trip_to_a_standalone_gateway() -> None:
    body = json.loads(json.dumps(table_to_json(table())))
    again = table_from_json(body, "test")
    assert dict(again.endpoints) == dict(table().endpoints)
    assert again.known_token_hashes == table().known_token_hashes
    assert table_to_json(again)["version"] == body["version"]


def test_the_version_changes_with_the_content() -> None:
    changed = table().without(frozenset({"r1"}))
    assert table_to_json(changed)["version"] != table_to_json(table())["version"]


def test_a_route_file_may_list_plain_tokens_and_bare_addresses() -> None:
    loaded = table_from_json(
        {"endpoints": [{"service_id": "b", "tokens": ["t"], "replicas": ["127.0.0.1:1"]}]}, "f"
    )
    route = loaded.endpoints["b"]
    assert route.replicas[0].address == "127.0.0.1:1"
    assert len(next(iter(route.owner_token_hashes))) == 64  # a sha256, not the token
    assert "t" not in route.owner_token_hashes


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"service_id": "b", "replicas": []}, "tokens"),
        ({"service_id": "b", "tokens": ["t"], "gateway_metadata": {"policy": "x"}}, "policy"),
        ({"tokens": ["t"]}, "service_id"),
        ({"service_id": "b", "tokens": ["t"], "gateway_metadata": {"retries": -1}}, "retries"),
    ],
)
def test_a_bad_route_file_names_what_is_wrong(entry: dict[str, Any], named: str) -> None:
    with pytest.raises(MoorageError, match=named):
        table_from_json({"endpoints": [entry]}, "routes.json")
