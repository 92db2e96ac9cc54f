"""Replica logs through a real ``moorage serve``: ``GET /v1/inference-service/{id}/logs``
and ``moorage logs``, on the process and the docker runtime.

The Flask app prints its startup banner and one access-log line per request, so a
request through the gateway with a unique marker in its query string shows up in
the logs of the replica that answered it.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.support.server import MOORAGE, ApiClient, MoorageServer, wait_for

# What this module checks is the replicas' log files, the same over either store.
STORES = ["sqlite"]
RUNTIMES = ["process", "docker", "ray"]
LOGS = "/v1/inference-service/{}/logs"
WAIT_S = 30.0


def _logs(client: ApiClient, service_id: str, **params: str) -> requests.Response:
    return client.call("GET", LOGS.format(service_id), params=params)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


def _marked_request(client: ApiClient, service_id: str) -> tuple[str, str]:
    """Calls the app through the gateway with a fresh marker; returns the marker and
    the replica that answered."""
    marker = uuid.uuid4().hex
    answer = client.gateway(service_id, "echo", params={"marker": marker})
    assert answer.status_code == 200, answer.text
    return marker, str(answer.json()["replica"])


def _access_line(marker: str) -> str:
    return f"/echo?marker={marker}"


def _logs_with(client: ApiClient, service_id: str, *markers: str) -> str:
    """The endpoint's whole logs, once every marker's access-log line is in them."""

    def complete() -> str | None:
        response = _logs(client, service_id)
        assert response.status_code == 200, response.text
        text = response.text
        return text if all(_access_line(m) in text for m in markers) else None

    text: str = wait_for(complete, timeout=WAIT_S, what=f"access lines of {markers} in the logs")
    return text


def _endpoint(client: ApiClient, name: str, replicas: int) -> Iterator[str]:
    service_id = str(
        client.create(name=name, resource_metadata={"target_instance_number": replicas})[
            "service_id"
        ]
    )
    try:
        client.wait_status(service_id, "available", timeout=90)
        yield service_id
    finally:
        client.call("DELETE", f"/v1/inference-service/{service_id}")


@pytest.fixture(scope="module")
def single(alice: ApiClient) -> Iterator[str]:
    """An endpoint of alice's with one replica."""
    yield from _endpoint(alice, "logs-single", 1)


@pytest.fixture(scope="module")
def pair(alice: ApiClient) -> Iterator[str]:
    """An endpoint of alice's with two replicas."""
    yield from _endpoint(alice, "logs-pair", 2)


def _markers_by_replica(client: ApiClient, service_id: str, each: int) -> dict[str, list[str]]:
    """Requests until every replica of the endpoint has answered ``each`` of them."""
    replicas = {r["replica_id"] for r in client.get(service_id)["endpoint_metadata"]["replicas"]}
    served: dict[str, list[str]] = {r: [] for r in replicas}
    for _ in range(40 * each * len(replicas)):
        marker, replica = _marked_request(client, service_id)
        served[replica].append(marker)
        if all(len(m) >= each for m in served.values()):
            return served
    raise AssertionError(f"not every replica answered {each} requests: {served}")


# -- the API -------------------------------------------------------------------------


def test_logs_hold_the_banner_and_a_line_per_request(alice: ApiClient, single: str) -> None:
    markers = [_marked_request(alice, single)[0] for _ in range(3)]
    text = _logs_with(alice, single, *markers)
    assert "Running on" in text  # Flask's startup banner
    response = _logs(alice, single)
    assert response.headers["content-type"].startswith("text/plain")
    positions = [response.text.index(_access_line(m)) for m in markers]
    assert positions == sorted(positions)  # in the order the requests came
    single_lines = _lines(response.text)
    assert not any(line.startswith("[") for line in single_lines)  # one replica: no prefix


def test_tail_returns_at_most_that_many_lines(alice: ApiClient, single: str) -> None:
    markers = [_marked_request(alice, single)[0] for _ in range(5)]
    full = _logs_with(alice, single, *markers)
    assert len(_lines(full)) > 5

    last_two = _logs(alice, single, tail="2")
    assert last_two.status_code == 200, last_two.text
    tail = _lines(last_two.text)
    assert len(tail) == 2
    # The last lines: after the requests' (readiness probes may have added lines since).
    after = _lines(_logs(alice, single).text)
    start = next(i for i, line in enumerate(after) if _access_line(markers[-2]) in line)
    assert any(after[i : i + 2] == tail for i in range(start, len(after) - 1)), (tail, after)

    none = _logs(alice, single, tail="0")
    assert none.status_code == 200, none.text
    assert _lines(none.text) == []


def test_two_replicas_are_told_apart_and_one_can_be_picked(alice: ApiClient, pair: str) -> None:
    served = _markers_by_replica(alice, pair, each=2)
    first, second = sorted(served)
    text = _logs_with(alice, pair, *served[first], *served[second])

    prefixes = {f"[{r[:8]}] " for r in served}
    lines = _lines(text)
    assert all(any(line.startswith(p) for p in prefixes) for line in lines), lines
    for replica, markers in served.items():
        for marker in markers:
            (line,) = [line for line in lines if _access_line(marker) in line]
            assert line.startswith(f"[{replica[:8]}] ")

    by_prefix = _logs(alice, pair, replica=first[:8])
    assert by_prefix.status_code == 200, by_prefix.text
    assert all(_access_line(m) in by_prefix.text for m in served[first])
    assert not any(_access_line(m) in by_prefix.text for m in served[second])
    assert not any(line.startswith("[") for line in _lines(by_prefix.text))

    by_id = _logs(alice, pair, replica=second)
    assert by_id.status_code == 200, by_id.text
    assert all(_access_line(m) in by_id.text for m in served[second])
    assert not any(_access_line(m) in by_id.text for m in served[first])

    tail = _logs(alice, pair, tail="1")
    assert tail.status_code == 200, tail.text
    counts = {p: sum(line.startswith(p) for line in _lines(tail.text)) for p in prefixes}
    assert all(count <= 1 for count in counts.values()), tail.text


def test_an_unknown_replica_is_a_400_naming_replica(alice: ApiClient, pair: str) -> None:
    for unknown in ("zzzzzzzz", "0" * 32):
        response = _logs(alice, pair, replica=unknown)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_field"
        assert response.json()["message"].startswith("replica:")


def test_a_negative_tail_is_a_400_naming_tail(alice: ApiClient, single: str) -> None:
    response = _logs(alice, single, tail="-1")
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("tail:")


def test_another_users_endpoint_logs_are_a_404(bob: ApiClient, single: str) -> None:
    assert _logs(bob, single).status_code == 404
    assert _logs(bob, single, follow="true").status_code == 404
    assert _logs(bob, "0" * 32).status_code == 404


def _follow(client: ApiClient, service_id: str, **params: str) -> requests.Response:
    response = requests.get(
        client.base + LOGS.format(service_id),
        params={"follow": "true", **params},
        headers=client.headers,
        stream=True,
        timeout=(5, WAIT_S),  # a read that waits longer fails the test
    )
    assert response.status_code == 200, response.text
    return response


@contextlib.contextmanager
def _requests_meanwhile(client: ApiClient, service_id: str) -> Iterator[list[tuple[str, str]]]:
    """Marked requests through the gateway, a few a second, in the background (a
    follower cannot tell when it has started following); yields the (marker, replica)
    pairs made so far."""
    made: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            while not done.is_set():
                made.append(_marked_request(client, service_id))
                done.wait(0.3)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield made
    finally:
        done.set()
        thread.join(timeout=WAIT_S)
    if errors:
        raise errors[0]


def _read_until(
    lines: Iterator[str], found: Callable[[list[str]], bool], deadline: float
) -> list[str]:
    """Lines from the stream until ``found`` says enough has come (bounded: each read
    times out, and so does the whole)."""
    seen: list[str] = []
    for line in lines:
        seen.append(line)
        if found(seen):
            return seen
        assert time.monotonic() < deadline, f"not found in the stream: {seen}"
    raise AssertionError(f"the stream ended early: {seen}")


def _line_of(marker: str, lines: list[str]) -> str | None:
    return next((line for line in lines if _access_line(marker) in line), None)


def test_follow_streams_new_lines_while_open(alice: ApiClient, single: str) -> None:
    with (
        _follow(alice, single, tail="0") as stream,
        _requests_meanwhile(alice, single) as made,
    ):
        lines = stream.iter_lines(decode_unicode=True)
        seen = _read_until(
            lines,
            lambda seen: any(_line_of(m, seen) for m, _ in list(made)),
            time.monotonic() + WAIT_S,
        )
        count = len(made)
        # And the stream goes on with what comes later.
        _read_until(
            lines,
            lambda later: any(_line_of(m, later) for m, _ in made[count:]),
            time.monotonic() + WAIT_S,
        )
    assert not any("Running on" in line for line in seen)  # tail=0: only what came after


def test_follow_merges_both_replicas_with_their_prefixes(alice: ApiClient, pair: str) -> None:
    def both_replicas(seen: list[str]) -> bool:
        return len({r for m, r in list(made) if _line_of(m, seen)}) == 2

    with _follow(alice, pair, tail="0") as stream, _requests_meanwhile(alice, pair) as made:
        seen = _read_until(
            stream.iter_lines(decode_unicode=True), both_replicas, time.monotonic() + WAIT_S
        )
    for marker, replica in made:
        line = _line_of(marker, seen)
        assert line is None or line.startswith(f"[{replica[:8]}] "), line


# -- the CLI -------------------------------------------------------------------------


def test_cli_prints_the_last_lines(server: MoorageServer, alice: ApiClient, single: str) -> None:
    markers = [_marked_request(alice, single)[0] for _ in range(3)]
    _logs_with(alice, single, *markers)
    result = server.cli("logs", single, "--tail", "5", "--url", server.url, "--token", alice.token)
    assert result.returncode == 0, result.stderr
    printed = _lines(result.stdout)
    assert len(printed) == 5
    # The last lines: from the requests' on (readiness probes may have added lines since).
    after = _lines(_logs(alice, single).text)
    start = next(i for i, line in enumerate(after) if _access_line(markers[-1]) in line) - 4
    assert any(after[i : i + 5] == printed for i in range(start, len(after) - 4)), (printed, after)


def test_cli_reports_the_apis_message_for_an_unknown_id(
    server: MoorageServer, alice: ApiClient
) -> None:
    unknown = "0" * 32
    message = _logs(alice, unknown).json()["message"]
    result = server.cli("logs", unknown, "--url", server.url, "--token", alice.token)
    assert result.returncode != 0
    assert result.stdout == ""
    assert " ".join(message.split()) in " ".join(result.stderr.split())


def test_cli_follow_prints_new_lines_while_running(
    server: MoorageServer, alice: ApiClient, single: str
) -> None:
    command = [MOORAGE, "logs", single, "-f", "--tail", "0"]
    command += ["--url", server.url, "--token", alice.token]
    printed: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(
        command, env=server.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as follower:
        assert follower.stdout is not None

        def pump() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                printed.put(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            # The follower may not have connected yet: ask until a marker comes out.
            deadline = time.monotonic() + WAIT_S
            markers: list[str] = []
            seen: list[str] = []
            while not any(_access_line(m) in line for m in markers for line in seen):
                assert follower.poll() is None, follower.stderr.read() if follower.stderr else ""
                assert time.monotonic() < deadline, f"moorage logs -f printed only {seen}"
                markers.append(_marked_request(alice, single)[0])
                with_timeout = time.monotonic() + 1.0
                while time.monotonic() < with_timeout:
                    try:
                        seen.append(printed.get(timeout=0.1))
                    except queue.Empty:
                        continue
            assert follower.poll() is None, "moorage logs -f stopped on its own"
        finally:
            follower.terminate()
            try:
                follower.wait(timeout=10)
            except subprocess.TimeoutExpired:
                follower.kill()
                follower.wait()
        reader.join(timeout=10)
