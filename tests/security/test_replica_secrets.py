"""An endpoint's ``env`` holds its owner's secrets (API keys, tokens): they must reach its
replicas and no one else. Every local user of the host can read every process's
command line (``ps -eo args``, ``/proc/PID/cmdline``), so no value may be on one.

alice (a normal user: sandboxed on the process runtime) and the admin (unsandboxed)
each run an endpoint whose ``env`` holds a token of its own. While both run, the test
reads every process's command line on the host, as any local user could, and asks
each replica, through the gateway, for the token it was given.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ApiClient, inline_app_command

# What this module checks is how a replica is launched, the same over either store.
STORES = ["sqlite"]
RUNTIMES = ["process", "docker"]
CONTAINER_PORT = 8080

# Answers GET with the token its environment holds, and nothing else.
TOKEN_APP = r"""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ.get("HF_TOKEN", "<unset>").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


def _command_lines() -> dict[int, str]:
    """Every process's command line, as ``ps -eo args`` shows it to any local user."""
    found: dict[int, str] = {}
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found[int(path.parent.name)] = (
                path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except (OSError, ValueError):
            continue
    return found


@pytest.fixture(scope="module")
def tokens(alice: ApiClient, admin: ApiClient) -> Iterator[dict[str, tuple[ApiClient, str, str]]]:
    """alice's and the admin's endpoints, available, each with a token in its env:
    who -> (their client, the endpoint's id, the token)."""
    running: dict[str, tuple[ApiClient, str, str]] = {}
    try:
        for who, client in (("alice", alice), ("admin", admin)):
            token = "hf_" + secrets.token_hex(16)
            created = client.create(
                name=f"{who}-with-a-token",
                deploy_metadata={
                    "command": inline_app_command(TOKEN_APP),
                    "port": CONTAINER_PORT,
                    "env": {"HF_TOKEN": token, "OTHER": "not secret"},
                },
            )
            running[who] = (client, str(created["service_id"]), token)
        for client, service_id, _ in running.values():
            client.wait_status(service_id, "available", timeout=120)
        yield running
    finally:
        for client, service_id, _ in running.values():
            client.call("DELETE", f"/v1/inference-service/{service_id}")


def test_no_command_line_on_the_host_holds_an_endpoints_env_value(
    tokens: dict[str, tuple[ApiClient, str, str]],
) -> None:
    for client, service_id, token in tokens.values():
        assert client.gateway(service_id).text == token, "the replica is not running"

    leaked = {
        pid: line
        for pid, line in _command_lines().items()
        if any(token in line for _, _, token in tokens.values())
    }

    assert leaked == {}, "an endpoint's env value is on a command line every local user reads"
    for client, service_id, token in tokens.values():
        assert client.gateway(service_id).text == token, "the replica stopped meanwhile"


def test_each_replica_gets_its_own_env_value(
    tokens: dict[str, tuple[ApiClient, str, str]],
) -> None:
    for who, (client, service_id, token) in tokens.items():
        response = client.gateway(service_id)
        assert response.status_code == 200, response.text
        assert response.text == token, f"{who}'s replica did not get its token"
