"""``GET .../logs`` gives exactly the lines a replica printed, on the process and the
docker runtime: lines written in pieces, several in one write, a last one without its
newline, and stderr's among stdout's (on an engine, a stderr line written while a
stdout line is half written too: they used to run together), with ``tail`` and while
following."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.server import ApiClient, MoorageServer, inline_app_command

STORES = ["sqlite"]  # what is checked is the replicas' output, beside the store
RUNTIMES = ["process", "docker"]
LOGS = "/v1/inference-service/{}/logs"
WAIT_S = 30.0
APP = inline_app_command(Path(__file__).with_name("apps").joinpath("printer.py").read_text())


def _interleaved(server: MoorageServer) -> bool:
    return server.runtime == "docker"


def _printed(server: MoorageServer) -> list[str]:
    between = ["err-between"] if _interleaved(server) else []
    return ["one", "two", "three", *between, "partial", "err-one", "four", "waiting"]


def _said(server: MoorageServer, first: str) -> list[str]:
    between = ["live-err"] if _interleaved(server) else []
    return [first, *between, "live-partial", "live-two"]


@pytest.fixture(scope="module")
def printer(server: MoorageServer, alice: ApiClient) -> Iterator[str]:
    endpoint = alice.create(
        name="printer",
        deploy_metadata={
            "command": APP,
            "env": {"INTERLEAVE": "1" if _interleaved(server) else "0"},
        },
    )
    service_id = str(endpoint["service_id"])
    try:
        alice.wait_status(service_id, "available", timeout=90)
        yield service_id
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


def _text(client: ApiClient, service_id: str, **params: str) -> str:
    response = client.call("GET", LOGS.format(service_id), params=params)
    assert response.status_code == 200, response.text
    return response.text


def _follow(client: ApiClient, service_id: str, tail: str, count: int) -> list[str]:
    """Follows with ``tail``, has the app print more once following, and returns the
    lines read until ``count`` lines have come after the app was asked."""
    with requests.get(
        client.base + LOGS.format(service_id),
        params={"follow": "true", "tail": tail},
        headers=client.headers,
        stream=True,
        timeout=(5, WAIT_S),
    ) as stream:
        assert stream.status_code == 200, stream.text
        time.sleep(1.0)  # the follower is reading before the app prints
        assert client.gateway(service_id, "say").status_code == 200
        seen: list[str] = []
        deadline = time.monotonic() + WAIT_S
        for line in stream.iter_lines(decode_unicode=True):
            seen.append(line)
            if seen[-1] == "live-two" and len(seen) >= count:
                return seen
            assert time.monotonic() < deadline, seen
    raise AssertionError(f"the stream ended early: {seen}")


def test_every_line_as_printed_with_tail_and_while_following(
    server: MoorageServer, alice: ApiClient, printer: str
) -> None:
    printed = _printed(server)
    # The app prints at start, before it serves: all of it is there once available.
    assert _text(alice, printer) == "".join(f"{line}\n" for line in printed)
    assert _text(alice, printer, tail="3") == "".join(f"{line}\n" for line in printed[-3:])
    assert _text(alice, printer, tail="1") == "waiting\n"
    assert _text(alice, printer, tail="0") == ""

    # Following from the last lines: the unfinished "waiting" is finished by the app.
    said = _said(server, "waiting done")
    seen = _follow(alice, printer, "2", len(said))
    assert seen[-len(said) :] == said, seen
    before = seen[: -len(said)]
    assert 1 <= len(before) <= 2, seen
    assert before == printed[-1 - len(before) : -1], seen

    # Following only what comes next.
    assert _follow(alice, printer, "0", 0) == _said(server, " done")

    everything = [*printed[:-1], *said, *_said(server, " done")]
    assert _text(alice, printer) == "".join(f"{line}\n" for line in everything)
    assert _text(alice, printer, tail="5") == "".join(f"{line}\n" for line in everything[-5:])
