"""``moorage serve`` as an operator runs it: the admin token, the tokens command,
signals that stop every replica, and a restart that brings endpoints back."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import database
from tests.support.server import MOORAGE, ApiClient, MoorageServer, processes_with_env, wait_for


def test_admin_token_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    with database("sqlite", tmp_path) as url:
        first = MoorageServer(home=tmp_path, database_url=url, admin_token=None).start()
        try:
            token_file = tmp_path / "admin-token"
            token = token_file.read_text().strip()
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
            assert token in first.log().splitlines()  # printed on a line of its own
            flavors = ApiClient(first.url, token).call("GET", "/v1/inference-service/flavor")
            assert flavors.status_code == 200
        finally:
            first.stop()
        second = MoorageServer(home=tmp_path, database_url=url, admin_token=None)
        (tmp_path / "serve.log").unlink()
        second.start()
        try:
            assert token not in second.log()  # never printed again
            flavors = ApiClient(second.url, token).call("GET", "/v1/inference-service/flavor")
            assert flavors.status_code == 200
        finally:
            second.stop()


def test_tokens_create_makes_the_user_and_prints_a_working_token(tmp_path: Path) -> None:
    with database("sqlite", tmp_path) as url:
        server = MoorageServer(home=tmp_path, database_url=url).start()
        try:
            result = server.cli("tokens", "create", "--user", "carol")
            assert result.returncode == 0, result.stderr
            token = result.stdout.strip()
            assert token.count("\n") == 0
            assert token.startswith("mrg_")
            carol = ApiClient(server.url, token)
            assert carol.call("GET", "/v1/inference-service").status_code == 200
            again = server.cli("tokens", "create", "--user", "carol")
            assert again.stdout.strip() != token
            admin = ApiClient(server.url, server.admin_token or "")
            users = admin.call("GET", "/v1/users").json()["user_list"]
            assert [u["name"] for u in users].count("carol") == 1
        finally:
            server.stop()


def test_the_quickstarts_relative_home_runs_a_users_replica_in_the_sandbox(
    tmp_path: Path,
) -> None:
    """The README's first steps: MOORAGE_HOME left at its default, ``.moorage`` in the
    directory serve starts in, and a normal user's endpoint on the process runtime."""
    # A short folder: a replica's socket path must fit the 107 bytes of a Unix socket's.
    folder = Path(tempfile.mkdtemp(prefix="mrg-", dir="/tmp"))
    with database("sqlite", tmp_path) as url:
        server = MoorageServer(
            home=folder / ".moorage",
            database_url=url,
            extra_env={"MOORAGE_HOME": ".moorage"},
            cwd=folder,
        ).start()
        try:
            token = server.cli("tokens", "create", "--user", "alice")
            assert token.returncode == 0, token.stderr
            alice = ApiClient(server.url, token.stdout.strip())
            created = alice.create(name="quickstart")
            alice.wait_status(created["service_id"], "available", timeout=90)
            assert alice.gateway(created["service_id"]).status_code == 200
            alice.call("DELETE", f"/v1/inference-service/{created['service_id']}")
        finally:
            server.stop()
            shutil.rmtree(folder, ignore_errors=True)


def test_tokens_create_refuses_a_home_with_no_store(tmp_path: Path) -> None:
    """Run in the wrong directory, the command must not make a new, empty store
    and print a token that no running server knows."""
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
    env["MOORAGE_HOME"] = str(empty)
    result = subprocess.run(
        [MOORAGE, "tokens", "create", "--user", "carol"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""  # no token
    assert "no moorage store" in result.stderr
    assert "MOORAGE_HOME" in result.stderr
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_every_replica_and_a_restart_brings_them_back(
    tmp_path: Path, sig: signal.Signals
) -> None:
    with database("sqlite", tmp_path) as url:
        server = MoorageServer(home=tmp_path, database_url=url).start()
        client = ApiClient(server.url, server.admin_token or "")
        try:
            service_id = client.create(
                name="survivor", resource_metadata={"target_instance_number": 2}
            )["service_id"]
            client.wait_status(service_id, "available")
            assert len(processes_with_env("MOORAGE_ENDPOINT_ID", service_id)) >= 2
        finally:
            # uvicorn re-raises the signal once shut down, as a signalled program should.
            assert server.stop(sig) in (0, -sig)
        assert "moorage stopped" in server.log()
        assert processes_with_env("MOORAGE_ENDPOINT_ID", service_id) == []

        restarted = MoorageServer(home=tmp_path, database_url=url).start()
        client = ApiClient(restarted.url, restarted.admin_token or "")
        try:
            endpoint = client.wait_status(service_id, "available")
            assert endpoint["endpoint_metadata"]["ready_replicas"] == 2
            assert client.gateway(service_id).status_code == 200
        finally:
            restarted.stop()
        wait_for(
            lambda: not processes_with_env("MOORAGE_ENDPOINT_ID", service_id),
            what="no replica left after the second stop",
        )


def test_openapi_and_docs_are_served_with_the_reference_examples(tmp_path: Path) -> None:
    with database("sqlite", tmp_path) as url:
        server = MoorageServer(home=tmp_path, database_url=url).start()
        try:
            client = ApiClient(server.url, "")
            spec = client.call("GET", "/openapi.json").json()
            assert "/v1/inference-service" in spec["paths"]
            assert "/v1/inference-service/{service_id}" in spec["paths"]
            assert "test-flask-server-9" in str(spec)
            assert client.call("GET", "/docs").status_code == 200
        finally:
            server.stop()
