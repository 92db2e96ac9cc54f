"""``moorage logs`` against a real ``moorage serve``: found the way ``moorage serve``
is configured (``MOORAGE_PORT``), and when it cannot be reached or does not know the
token, an error that names the URL and the token's source it tried and what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.server import MOORAGE, ApiClient, MoorageServer, free_port

STORES = ["sqlite"]  # what is checked is the CLI's own messages
POINTERS = ("--url", "MOORAGE_URL", "MOORAGE_PORT")


def _logs(
    server: MoorageServer, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {**server.env(), **env}
    for name in [name for name, value in env.items() if value == ""]:
        del environment[name]
    return subprocess.run(
        [MOORAGE, "logs", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def service_id(alice: ApiClient) -> str:
    return str(
        alice.create(name="cli-errors", deploy_metadata={"command": "sleep 60"})["service_id"]
    )


def test_beside_the_server_it_is_found_by_moorage_port(
    server: MoorageServer, alice: ApiClient, service_id: str
) -> None:
    # No --url and no MOORAGE_URL: the server's own MOORAGE_PORT leads to it.
    result = _logs(server, service_id, "--tail", "1", MOORAGE_TOKEN=alice.token)
    assert result.returncode == 0, result.stderr


def test_an_unreachable_server_is_named_with_how_to_point_elsewhere(
    server: MoorageServer, alice: ApiClient, service_id: str
) -> None:
    closed = free_port()
    result = _logs(server, service_id, MOORAGE_PORT=str(closed), MOORAGE_TOKEN=alice.token)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"cannot reach moorage at http://127.0.0.1:{closed} (from MOORAGE_PORT={closed})" in (
        result.stderr
    )
    assert all(pointer in result.stderr for pointer in POINTERS), result.stderr

    by_url = f"http://127.0.0.1:{free_port()}"
    result = _logs(server, service_id, "--url", by_url, "--token", alice.token)
    assert result.returncode == 2
    assert f"cannot reach moorage at {by_url} (from --url)" in result.stderr
    assert "MOORAGE_URL" in result.stderr

    result = _logs(server, service_id, MOORAGE_PORT="", MOORAGE_TOKEN=alice.token)
    if result.returncode == 2:  # nothing else on 8080 of this host
        assert "at http://127.0.0.1:8080 (from the default" in result.stderr, result.stderr
        assert all(pointer in result.stderr for pointer in POINTERS), result.stderr


def test_an_unknown_token_names_the_server_the_token_and_both_ways_out(
    server: MoorageServer, service_id: str
) -> None:
    result = _logs(server, service_id, "--url", server.url, "--token", "not-a-token")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error (401)" in result.stderr
    assert f"The server at {server.url} (from --url)" in result.stderr
    assert "the token from --token" in result.stderr
    assert "another moorage's token" in result.stderr  # the wrong server, perhaps
    assert "ask this server's admin for a new one" in result.stderr
    assert "not-a-token" not in result.stderr  # a token is never printed

    result = _logs(server, service_id, MOORAGE_TOKEN="not-a-token")
    assert result.returncode == 1
    assert "the token from MOORAGE_TOKEN" in result.stderr
    assert f"(from MOORAGE_PORT={server.port})" in result.stderr


def test_no_token_names_every_place_it_looked(
    server: MoorageServer, service_id: str, tmp_path: Path
) -> None:
    home = tmp_path / "elsewhere"
    result = _logs(
        server, service_id, MOORAGE_ADMIN_TOKEN="", MOORAGE_TOKEN="", MOORAGE_HOME=str(home)
    )
    assert result.returncode == 2
    message = result.stderr
    assert "--token" in message
    assert "MOORAGE_TOKEN" in message
    assert str(home / "admin-token") in message
