"""The ``moorage`` command against a server whose data is hostile: endpoint names,
replica output, event messages and logs written to drive a terminal (Rich markup,
OSC 8 links, escape sequences, C1 controls, bidi overrides), and answers that are not
what the API sends. The command runs as installed, in a subprocess, against a tiny
stdlib HTTP server on 127.0.0.1 that answers what each test puts in it.

``FORCE_COLOR=1`` makes Rich write to the pipe as to a terminal, so a link that
markup made would be written as OSC 8; ``logs`` is also run on a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.endpoint_objects import endpoint_object
from tests.support.server import MOORAGE

LINK = "[link=http://evil.example/]click[/link][bold red]R[/]"
# Every way a string could act on a terminal: markup, a closing tag alone, an escape
# sequence (title), OSC 52 (clipboard), a C1 CSI, a bidi override, a line separator.
HOSTILE = (
    LINK + "[/bold][conceal]hidden[/conceal]\x1b]0;owned\x07\x1b]52;c;ZXZpbA==\x07"
    "\x9b2J\u202eRLO\u2028"
)
OSC = "\x1b]"
ACTING = ("\x07", "\x9b", "\u202e", "\u2028", OSC)


def endpoint_json() -> dict[str, Any]:
    e = endpoint_object(
        status="unavailable", info=HOSTILE, wanted=1, replicas=[("failed", 1, HOSTILE)]
    ).model_dump(mode="json", by_alias=True)
    e["name"] = HOSTILE
    e["deploy_metadata"]["command"] = HOSTILE
    e["deploy_metadata"]["image_url"] = HOSTILE
    return e


def usage_json() -> dict[str, Any]:
    cost = {"usd": "1.000000", "cny": "0.000000", "nmt": "0.000000"}
    row = {"instance_seconds": 1, "gpu_seconds": 0, "cost": cost}
    return {
        "from": "2026-01-01 00:00:00",
        "to": "2026-02-01 00:00:00",
        "group_by": "endpoint",
        "user_id": None,
        "rows": [
            {**row, "key": "s1", "name": "[/bold]", "is_deleted": True},
            {**row, "key": "s2", "name": HOSTILE, "is_deleted": False},
        ],
        "totals": {**row, "instance_seconds": 2},
    }


def events_json() -> dict[str, Any]:
    event = {
        "time": "2026-01-01 00:00:00",
        "kind": "failed",
        "replica_id": "1" * 32,
        "revision": 1,
        "reason": None,
        "detail": HOSTILE,
        "message": HOSTILE,
    }
    return {"event_list": [event], "total": 1, "page": 1, "page_size": 20}


# (status, headers, body) for a path; the default answers are well-formed and hostile.
Answer = tuple[int, dict[str, str], bytes]


def good_answers() -> dict[str, Answer]:
    js = {"Content-Type": "application/json"}
    endpoint = endpoint_json()
    return {
        "/v1/inference-service/s1": (200, js, json.dumps(endpoint).encode()),
        "/v1/inference-service": (
            200,
            js,
            json.dumps(
                {"service_list": [endpoint], "total": 1, "page": 1, "page_size": 100}
            ).encode(),
        ),
        "/v1/inference-service/s1/events": (200, js, json.dumps(events_json()).encode()),
        "/v1/usage": (200, js, json.dumps(usage_json()).encode()),
        "/v1/inference-service/s1/logs": (
            200,
            {"Content-Type": "text/plain"},
            (HOSTILE + "\nsecond\x1b[2J line\n").encode(),
        ),
    }


class FakeServer:
    """Answers each GET from ``answers`` by its path; 404 otherwise."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = good_answers()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                status, headers, body = owner.answers.get(
                    path,
                    (404, {"Content-Type": "application/json"}, b'{"code":"x","message":"no"}'),
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


def env(fake: FakeServer, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
    base.update(
        MOORAGE_URL=fake.url,
        MOORAGE_TOKEN="t-secret",
        MOORAGE_CLIENT_CONFIG=str(tmp_path / "config.toml"),
        FORCE_COLOR="1",
        COLUMNS="400",
    )
    return base


def moorage(fake: FakeServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MOORAGE, *args],
        env=env(fake, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_inert(text: str) -> None:
    """Nothing in ``text`` acts on a terminal but Rich's own colours (CSI ... m)."""
    for acting in ACTING:
        assert acting not in text, (acting, text)
    assert "evil.example" not in text or "[link=http://evil.example/]" in text
    assert "\x1b[2J" not in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["endpoints", "get", "s1"],
        ["endpoints", "events", "s1"],
        ["usage", "--group-by", "endpoint"],
    ],
    ids=["ls", "get", "events", "usage"],
)
def test_hostile_strings_are_shown_as_text(
    fake: FakeServer, tmp_path: Path, args: list[str]
) -> None:
    result = moorage(fake, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert_inert(result.stdout + result.stderr)
    assert LINK in result.stdout  # the brackets as they were sent
    assert "\\u001b]0;owned\\u0007" in result.stdout  # the escape shown, not obeyed
    if args[0] == "usage":
        assert "[/bold] (deleted)" in result.stdout
        assert "\\u202eRLO\\u2028" in result.stdout
    if args[:2] == ["endpoints", "get"]:
        assert "[conceal]hidden[/conceal]" in result.stdout


def test_an_answer_of_hostile_json_and_yaml_stays_data(fake: FakeServer, tmp_path: Path) -> None:
    result = moorage(fake, tmp_path, "endpoints", "get", "s1", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert_inert(result.stdout)
    assert json.loads(result.stdout)["name"] == HOSTILE


def test_logs_on_a_terminal_show_controls_and_into_a_pipe_stay_raw(
    fake: FakeServer, tmp_path: Path
) -> None:
    piped = moorage(fake, tmp_path, "logs", "s1")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == HOSTILE + "\nsecond\x1b[2J line\n"

    leader, follower = pty.openpty()
    chunks: list[bytes] = []
    process = subprocess.Popen(
        [MOORAGE, "logs", "s1"],
        env=env(fake, tmp_path),
        stdout=follower,
        stderr=subprocess.DEVNULL,
    )
    try:
        os.close(follower)
        deadline = time.monotonic() + 60
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([leader], [], [], left)
            if not readable:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other side closed: all is read
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        os.close(leader)
    shown = b"".join(chunks).decode()
    assert_inert(shown)
    assert "\\u001b]52;c;ZXZpbA==\\u0007\\u009b2J" in shown
    assert "second\\u001b[2J line" in shown


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (200, {"Content-Type": "application/json"}, b"{not json"),
        (200, {"Content-Type": "application/json"}, b'{"service_list": 3}'),
        (307, {}, b""),
    ],
    ids=["not-json", "wrong-shape", "empty-307"],
)
def test_an_unreadable_answer_is_one_line(
    fake: FakeServer, tmp_path: Path, status: int, headers: dict[str, str], body: bytes
) -> None:
    fake.answers["/v1/inference-service"] = (status, headers, body)
    result = moorage(fake, tmp_path, "ls")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "t-secret" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("\x1b[31merror"), lines[0]
    assert f"the server at {fake.url} answered" in lines[0]
    assert "something moorage cannot read (" in lines[0]
