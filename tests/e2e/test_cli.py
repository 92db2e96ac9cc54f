"""The ``moorage`` CLI against a real ``moorage serve``, as a user runs it: create from
flags and wait, list and read in every format, scale, apply a file twice and with a
change, stop, start, delete, events, logs, usage, login and the config file, the
environment overriding it, and the errors a user meets.

Whole flows run the installed command in a subprocess (no terminal: plain progress
lines); the rest run in-process with Typer's runner, against the same server.
"""

from __future__ import annotations

import json
import os
import queue
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from moorage.cli import endpoints
from moorage.cli.main import app
from tests.support.server import MOORAGE, ApiClient, MoorageServer, free_port, wait_for

# What is checked is the CLI over the API; the store under it is the API's concern.
STORES = ["sqlite"]
# The README's app, on the process runtime.
APP = "python3 -m http.server --bind 127.0.0.1 $PORT"
WAIT_S = 120


def environment(server: MoorageServer, config: Path, **env: str) -> dict[str, str]:
    """The server's environment less its admin token and port (a user elsewhere has
    neither), a config file of the test's own, and ``env`` ("" removes a name)."""
    base = server.env()
    for name in ("MOORAGE_ADMIN_TOKEN", "MOORAGE_PORT", "MOORAGE_HOME"):
        base.pop(name, None)
    base["MOORAGE_CLIENT_CONFIG"] = str(config)
    base.update(env)
    return {name: value for name, value in base.items() if value != ""}


def run(
    server: MoorageServer, config: Path, *args: str, timeout: float = WAIT_S, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MOORAGE, *args],
        env=environment(server, config, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=next(folder for folder in config.parents if folder.is_dir()),
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this module's CLI keeps its config (none there unless a test logs in)."""
    return tmp_path_factory.mktemp("cli") / "config.toml"


class Cli:
    """The CLI in-process, as one user: ``MOORAGE_URL`` and ``MOORAGE_TOKEN`` set."""

    def __init__(self, server: MoorageServer, config: Path, token: str) -> None:
        self.env = {
            "MOORAGE_URL": server.url,
            "MOORAGE_TOKEN": token,
            "MOORAGE_CLIENT_CONFIG": str(config),
            "MOORAGE_ADMIN_TOKEN": None,
            "MOORAGE_PORT": None,
        }

    def __call__(self, *args: str, ok: bool = True) -> Any:
        result = CliRunner().invoke(app, list(args), env=self.env)
        if ok:
            assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def as_alice(server: MoorageServer, config: Path, alice: ApiClient) -> Cli:
    return Cli(server, config, alice.token)


@pytest.fixture(scope="module")
def as_bob(server: MoorageServer, config: Path, bob: ApiClient) -> Cli:
    return Cli(server, config, bob.token)


@pytest.fixture(scope="module")
def web(
    server: MoorageServer, config: Path, alice: ApiClient
) -> Iterator[tuple[str, subprocess.CompletedProcess[str]]]:
    """alice's endpoint "web", created by ``moorage endpoints create`` from flags, which
    waited for it; deleted afterwards."""
    result = run(
        server,
        config,
        *("endpoints", "create", "--name", "web", "--image", "python:3.10-slim"),
        *("--command", APP, "--env", "GREETING=hi"),
        MOORAGE_URL=server.url,
        MOORAGE_TOKEN=alice.token,
    )
    service_id = result.stdout.strip()
    try:
        yield service_id, result
    finally:
        if service_id:
            alice.call("DELETE", f"/v1/inference-service/{service_id}")


# -- create, list, read ----------------------------------------------------------------


def test_create_from_flags_waits_until_available_and_prints_the_id(
    web: tuple[str, subprocess.CompletedProcess[str]], alice: ApiClient
) -> None:
    service_id, result = web
    assert result.returncode == 0, result.stderr
    assert len(service_id) == 32, result.stdout  # stdout: the id alone, for $(...)
    # No terminal: one plain line per phase, then where to call it.
    assert "web: initializing, 0/1 ready" in result.stderr
    assert "web is available (1/1 ready): http://" in result.stderr
    endpoint = alice.get(service_id)
    assert endpoint["status"] == "available"
    assert endpoint["deploy_metadata"]["env"] == {"GREETING": "hi"}
    assert alice.gateway(service_id, "").status_code == 200


def test_ls_and_get_in_table_json_and_yaml(
    web: tuple[str, subprocess.CompletedProcess[str]], as_alice: Cli, alice: ApiClient
) -> None:
    service_id, _ = web
    table = as_alice("ls").stdout
    (row,) = [line for line in table.splitlines() if service_id in line]
    assert row.split()[:4] == ["web", service_id, "available", "1/1"]

    listed = as_alice.json("endpoints", "list")
    api = alice.call("GET", "/v1/inference-service", params={"page_size": 100}).json()
    assert listed.keys() == api.keys()
    assert [e["service_id"] for e in listed["service_list"]] == [
        e["service_id"] for e in api["service_list"]
    ]
    assert yaml.safe_load(as_alice("ls", "-o", "yaml").stdout)["service_list"][0].keys() == (
        api["service_list"][0].keys()
    )

    by_name = as_alice.json("endpoints", "get", "web")
    by_id = as_alice.json("endpoints", "get", service_id)
    got = alice.get(service_id)
    for shown in (by_name, by_id):
        assert shown.keys() == got.keys()
        assert shown["service_id"] == service_id
        assert shown["deploy_metadata"] == got["deploy_metadata"]
    assert (
        yaml.safe_load(as_alice("endpoints", "get", "web", "-o", "yaml").stdout)["deploy_metadata"]
        == (got["deploy_metadata"])
    )
    detail = as_alice("endpoints", "get", "web").stdout
    assert "available" in detail
    assert got["endpoint_metadata"]["endpoint_url"] in detail


def test_flavors_lists_the_servers(as_alice: Cli, alice: ApiClient) -> None:
    api = alice.call("GET", "/v1/inference-service/flavor").json()
    shown = as_alice.json("flavors")
    assert [f["flavor_id"] for f in shown["flavor_list"]] == [
        f["flavor_id"] for f in api["flavor_list"]
    ]
    assert api["flavor_list"][0]["flavor_id"] in as_alice("flavors").stdout


def test_scale_waits_for_every_replica(
    web: tuple[str, subprocess.CompletedProcess[str]], as_alice: Cli, alice: ApiClient
) -> None:
    service_id, _ = web
    result = as_alice("endpoints", "scale", "web", "2")
    assert "web is available (2/2 ready)" in result.stderr
    assert alice.get(service_id)["endpoint_metadata"]["ready_replicas"] == 2
    as_alice("endpoints", "scale", service_id, "1")


def test_scale_to_0_stops_a_manual_endpoint_and_a_stopped_one_keeps_its_new_count(
    as_alice: Cli, alice: ApiClient
) -> None:
    created = as_alice(
        *("endpoints", "create", "--name", "idle", "--image", "python:3.10-slim"),
        *("--command", APP, "--no-wait"),
    )
    service_id = created.stdout.strip()
    try:
        zero = as_alice("endpoints", "scale", "idle", "0")
        assert "a manual endpoint runs no replica when stopped: stopping idle" in zero.stderr
        assert alice.get(service_id)["status"] == "stopped"

        # Stopped: the count changes, nothing is waited for, it stays stopped.
        scaled = as_alice("endpoints", "scale", "idle", "2")
        assert "stays stopped until `moorage endpoints start idle`" in scaled.stderr
        assert "error" not in scaled.stderr
        after = alice.get(service_id)
        assert after["status"] == "stopped"
        assert after["resource_metadata"]["target_instance_number"] == 2
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_scale_to_0_of_an_automatic_endpoint_is_the_servers_to_answer(
    as_alice: Cli, alice: ApiClient
) -> None:
    service_id = alice.create(name="autoscaled")["service_id"]
    try:
        to_auto = {
            "resource_metadata": {
                "scale_type": "auto",
                "scale_policy": {"min_instances": 1, "max_instances": 2, "target": 3},
            }
        }
        response = alice.call("PUT", f"/v1/inference-service/{service_id}", json=to_auto)
        assert response.status_code == 200, response.text
        result = as_alice("endpoints", "scale", "autoscaled", "0", "--no-wait", ok=False)
        assert "stopping" not in result.stderr
        assert alice.get(service_id)["status"] != "stopped"
        assert result.exit_code == 1, result.stderr
        assert "error (400)" in result.stderr
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_delete_on_a_terminal_asks_first(
    as_alice: Cli, alice: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = as_alice(
        *("endpoints", "create", "--name", "asked", "--image", "python:3.10-slim"),
        *("--command", APP, "--no-wait"),
    )
    service_id = created.stdout.strip()
    monkeypatch.setattr(endpoints, "interactive", lambda: True)
    try:
        kept = CliRunner().invoke(
            app, ["endpoints", "delete", "asked"], env=as_alice.env, input="n\n"
        )
        assert kept.exit_code == 1
        assert f"delete asked ({service_id})? [y/N]" in kept.stderr
        assert alice.get(service_id)["status"] != "deleted"
        gone = CliRunner().invoke(
            app, ["endpoints", "delete", "asked"], env=as_alice.env, input="y\n"
        )
        assert gone.exit_code == 0, gone.stderr
        assert f"deleted asked ({service_id})" in gone.stderr
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_a_replica_that_crashes_fails_the_create_with_the_reason(
    server: MoorageServer, config: Path, alice: ApiClient
) -> None:
    result = run(
        server,
        config,
        *("endpoints", "create", "--name", "crashing", "--image", "python:3.10-slim"),
        *("--command", "echo boom; exit 3"),
        MOORAGE_URL=server.url,
        MOORAGE_TOKEN=alice.token,
    )
    service_id = result.stdout.strip()
    try:
        assert result.returncode == 1, result.stderr
        assert "error: endpoint crashing" in result.stderr
        assert "exited with code 3" in result.stderr
        # What the failure left behind, and the two ways out of it.
        assert (
            "crashing is still there, retrying with backoff: fix it with "
            "moorage endpoints update crashing ..., or remove it with "
            "moorage endpoints delete crashing"
        ) in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        if service_id:
            alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_update_rolls_out_a_new_revision_and_waits_for_it(
    web: tuple[str, subprocess.CompletedProcess[str]],
    as_alice: Cli,
    alice: ApiClient,
    config: Path,
) -> None:
    service_id, _ = web
    before = alice.get(service_id)["deploy_metadata"]["revision"]
    result = as_alice("endpoints", "update", "web", "--env", "GREETING=hello")
    assert "web is available (1/1 ready)" in result.stderr
    after = alice.get(service_id)
    assert after["deploy_metadata"]["revision"] == before + 1
    assert after["deploy_metadata"]["env"] == {"GREETING": "hello"}
    ready = [r for r in after["endpoint_metadata"]["replicas"] if r["state"] == "ready"]
    assert [r["revision"] for r in ready] == [before + 1]  # waited for the new one

    partial = config.parent / "partial.json"
    partial.write_text('{"description": "changed from a file"}')
    as_alice("endpoints", "update", service_id, "-f", str(partial), "--no-wait")
    assert alice.get(service_id)["description"] == "changed from a file"

    nothing = as_alice("endpoints", "update", "web", ok=False)
    assert nothing.exit_code == 2
    assert "nothing to change" in nothing.stderr


# -- apply -----------------------------------------------------------------------------


def test_apply_creates_then_says_no_changes_then_shows_and_applies_a_diff(
    server: MoorageServer, config: Path, alice: ApiClient, as_alice: Cli
) -> None:
    file = config.parent / "applied.yaml"
    flavor = alice.call("GET", "/v1/inference-service/flavor").json()["flavor_list"][0]
    body: dict[str, Any] = {
        "name": "applied",
        # By name, as a file shared between servers has it; apply compares the id.
        "resource_metadata": {"flavor_id": flavor["display_name"], "target_instance_number": 1},
        "deploy_metadata": {"image_url": "python:3.10-slim", "command": APP, "port": 8080},
    }
    file.write_text(yaml.safe_dump(body))
    first = as_alice("apply", "-f", str(file))
    service_id = first.stdout.strip()
    try:
        assert "created applied" in first.stderr
        assert alice.get(service_id)["resource_metadata"]["flavor_id"] == flavor["flavor_id"]
        assert "applied is available (1/1 ready)" in first.stderr

        again = as_alice("apply", "-f", str(file))
        assert f"applied ({service_id}): no changes" in again.stderr
        assert again.stdout.strip() == service_id

        body["resource_metadata"]["target_instance_number"] = 2
        file.write_text(yaml.safe_dump(body))
        # No terminal to confirm on: a change to a running endpoint needs --yes.
        refused = as_alice("apply", "-f", str(file), ok=False)
        assert refused.exit_code == 2
        assert "resource_metadata.target_instance_number: 1 -> 2" in refused.stderr
        assert "--yes" in refused.stderr
        assert alice.get(service_id)["resource_metadata"]["target_instance_number"] == 1

        applied = as_alice("apply", "-f", str(file), "--yes")
        assert "resource_metadata.target_instance_number: 1 -> 2" in applied.stderr
        assert "applied is available (2/2 ready)" in applied.stderr
        assert alice.get(service_id)["endpoint_metadata"]["ready_replicas"] == 2
        assert "no changes" in as_alice("apply", "-f", str(file)).stderr
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


# -- stop, start, delete, events ----------------------------------------------------------


def test_stop_start_events_and_delete(as_alice: Cli, alice: ApiClient) -> None:
    created = as_alice(
        *("endpoints", "create", "--name", "cycle", "--image", "python:3.10-slim"),
        *("--command", APP, "--no-wait"),
    )
    service_id = created.stdout.strip()
    try:
        assert "not waiting" in created.stderr
        assert "stopped" in as_alice("endpoints", "stop", "cycle").stderr
        assert alice.get(service_id)["status"] == "stopped"
        started = as_alice("endpoints", "start", "cycle")
        assert "cycle is available (1/1 ready)" in started.stderr

        kinds = [e["kind"] for e in as_alice.json("endpoints", "events", "cycle")["event_list"]]
        assert {"created", "stopped", "started"} <= set(kinds)
        table = as_alice("endpoints", "events", "cycle").stdout
        assert "stopped" in table
        assert "started" in table

        # No terminal to ask on: --yes is required, and nothing is deleted without it.
        unasked = as_alice("endpoints", "delete", "cycle", ok=False)
        assert unasked.exit_code == 2
        assert "--yes" in unasked.stderr
        assert alice.get(service_id)["status"] != "deleted"
        deleted = as_alice("endpoints", "delete", "cycle", "--yes")
        assert f"deleted cycle ({service_id})" in deleted.stderr
        gone = as_alice("endpoints", "get", "cycle", ok=False)
        assert gone.exit_code == 1
        assert "'cycle'" in gone.stderr
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


# -- logs ------------------------------------------------------------------------------


def test_logs_by_name_and_followed(
    server: MoorageServer,
    config: Path,
    web: tuple[str, subprocess.CompletedProcess[str]],
    alice: ApiClient,
) -> None:
    service_id, _ = web
    assert alice.gateway(service_id, "", params={"marker": "first"}).status_code == 200
    logs = f"/v1/inference-service/{service_id}/logs"
    wait_for(
        lambda: "marker=first" in alice.call("GET", logs).text,
        timeout=30,
        what="the request in the logs",
    )
    printed = run(
        server,
        config,
        "logs",
        "web",
        "--tail",
        "50",
        MOORAGE_URL=server.url,
        MOORAGE_TOKEN=alice.token,
    )
    assert printed.returncode == 0, printed.stderr
    assert "marker=first" in printed.stdout

    command = [MOORAGE, "logs", "web", "-f", "--tail", "0"]
    env = environment(server, config, MOORAGE_URL=server.url, MOORAGE_TOKEN=alice.token)
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as follower:
        assert follower.stdout is not None
        stdout = follower.stdout

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            # The follower may not be connected yet: ask again until a marker shows.
            deadline = time.monotonic() + 60
            seen: list[str] = []
            while not any("marker=followed" in line for line in seen):
                assert follower.poll() is None, "moorage logs -f stopped on its own"
                assert time.monotonic() < deadline, f"moorage logs -f printed only {seen}"
                alice.gateway(service_id, "", params={"marker": "followed"})
                end = time.monotonic() + 1
                while time.monotonic() < end:
                    try:
                        seen.append(lines.get(timeout=0.1))
                    except queue.Empty:
                        continue
        finally:
            follower.terminate()
            try:
                follower.wait(timeout=10)
            except subprocess.TimeoutExpired:
                follower.kill()
                follower.wait()
        reader.join(timeout=10)


# -- usage -----------------------------------------------------------------------------


def test_usage_as_table_json_and_csv(
    web: tuple[str, subprocess.CompletedProcess[str]], as_alice: Cli, alice: ApiClient
) -> None:
    service_id, _ = web
    report = as_alice.json("usage")
    assert set(report) == {"from", "to", "group_by", "user_id", "rows", "totals"}
    assert service_id in [row["key"] for row in report["rows"]]
    table = as_alice("usage").stdout
    assert service_id in table
    assert "total" in table
    by_day = as_alice.json("usage", "--group-by", "day")
    assert by_day["group_by"] == "day"

    csv = as_alice("usage", "--csv").stdout
    api_csv = alice.call("GET", "/v1/usage", headers={"Accept": "text/csv"}).text
    assert csv.splitlines()[0] == api_csv.splitlines()[0]
    assert service_id in csv

    # A date the server cannot read is the user's to fix: a usage error, before any call.
    bad = as_alice("usage", "--from", "not-a-date", ok=False)
    assert bad.exit_code == 2
    assert "--from 'not-a-date': must be an ISO 8601 date" in bad.stderr
    # What it passes, the server reads.
    assert as_alice.json("usage", "--from", "2026-01-31", "--to", "2026-02-01T00:00:00Z")


# -- tokens ----------------------------------------------------------------------------


def test_tokens_list_is_the_admins(
    server: MoorageServer, config: Path, admin: ApiClient, alice: ApiClient, as_alice: Cli
) -> None:
    as_admin = Cli(server, config, admin.token)
    tokens = as_admin.json("tokens", "list")["token_list"]
    alices = alice.call("GET", "/v1/quota").json()["user_id"]
    assert alices in [t["user_id"] for t in tokens]
    assert alices in as_admin("tokens", "list").stdout
    refused = as_alice("tokens", "list", ok=False)
    assert refused.exit_code == 1
    assert "error (403)" in refused.stderr


# -- login, the config file and the environment ------------------------------------------


def test_login_keeps_a_0600_config_that_later_commands_use(
    server: MoorageServer,
    web: tuple[str, subprocess.CompletedProcess[str]],
    alice: ApiClient,
    bob: ApiClient,
    tmp_path: Path,
) -> None:
    service_id, _ = web
    config = tmp_path / "conf" / "config.toml"
    bad = run(server, config, "login", "--url", server.url, "--token", "mrg_not_a_token")
    assert bad.returncode == 1
    assert "error (401)" in bad.stderr
    assert not config.exists()  # a token the server refused is not kept

    done = run(server, config, "login", "--url", server.url, "--token", alice.token)
    assert done.returncode == 0, done.stderr
    alices = alice.call("GET", "/v1/quota").json()["user_id"]
    assert f"as user {alices}" in done.stderr
    assert alice.token not in done.stderr + done.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert f'url = "{server.url}"' in config.read_text()

    # Neither flag nor environment: the config file's server and token.
    listed = run(server, config, "ls", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert service_id in [e["service_id"] for e in json.loads(listed.stdout)["service_list"]]

    # MOORAGE_TOKEN overrides the file's token: bob sees none of alice's endpoints.
    as_bob = run(server, config, "ls", "-o", "json", MOORAGE_TOKEN=bob.token)
    assert as_bob.returncode == 0, as_bob.stderr
    assert json.loads(as_bob.stdout)["service_list"] == []
    # MOORAGE_URL overrides the file's URL; the file's token is not sent there.
    elsewhere = f"http://127.0.0.1:{free_port()}"
    no_token = run(server, config, "ls", MOORAGE_URL=elsewhere)
    assert no_token.returncode == 2
    assert f"no token for {elsewhere}" in no_token.stderr
    assert f"kept is for {server.url}" in no_token.stderr
    unreachable = run(server, config, "ls", MOORAGE_URL=elsewhere, MOORAGE_TOKEN=alice.token)
    assert unreachable.returncode == 2
    assert f"cannot reach moorage at {elsewhere} (from MOORAGE_URL)" in unreachable.stderr
    assert "--url" in unreachable.stderr
    assert "moorage login" in unreachable.stderr

    # Without --token, login asks for it (hidden) on the terminal.
    config.unlink()
    asked = CliRunner().invoke(
        app,
        ["login", "--url", server.url],
        input=alice.token + "\n",
        env={"MOORAGE_CLIENT_CONFIG": str(config), "MOORAGE_URL": None, "MOORAGE_TOKEN": None},
    )
    assert asked.exit_code == 0, asked.stderr
    assert "API token for" in asked.stderr
    assert alice.token not in asked.stdout + asked.stderr  # not echoed
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    out = run(server, config, "logout")
    assert out.returncode == 0, out.stderr
    assert not config.exists()


def test_a_bad_token_prints_the_servers_message(
    server: MoorageServer, config: Path, alice: ApiClient
) -> None:
    message = ApiClient(server.url, "mrg_bad").call("GET", "/v1/inference-service").json()
    result = run(server, config, "ls", MOORAGE_URL=server.url, MOORAGE_TOKEN="mrg_bad")
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"error (401) {message['code']}: {message['message']}" in result.stderr
    assert "the token from MOORAGE_TOKEN" in result.stderr
    assert "mrg_bad" not in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_name_and_another_users_endpoint_are_not_found(
    web: tuple[str, subprocess.CompletedProcess[str]], as_alice: Cli, as_bob: Cli
) -> None:
    service_id, _ = web
    unknown = as_alice("endpoints", "get", "no-such-endpoint", ok=False)
    assert unknown.exit_code == 1
    assert "error (404)" in unknown.stderr
    assert "named 'no-such-endpoint'" in unknown.stderr
    for ref in (service_id, "web"):
        for command in (("endpoints", "get"), ("endpoints", "delete"), ("logs",)):
            yes = ("--yes",) if command == ("endpoints", "delete") else ()
            theirs = as_bob(*command, ref, *yes, ok=False)
            assert theirs.exit_code == 1, theirs.stdout
            assert "error (404)" in theirs.stderr
    assert as_alice.json("endpoints", "get", "web")["status"] != "deleted"


def test_usage_errors_exit_2_without_calling(as_alice: Cli) -> None:
    assert as_alice("endpoints", "create", "--name", "x", ok=False).exit_code == 2
    assert as_alice("endpoints", "scale", "web", "-1", ok=False).exit_code == 2
    bad_env = as_alice(
        *("endpoints", "create", "--name", "x", "--image", "i", "--env", "NOVALUE"), ok=False
    )
    assert bad_env.exit_code == 2
    assert "--env: expected NAME=VALUE" in bad_env.stderr


# -- tokens create, beside the store ------------------------------------------------------


def test_tokens_create_refuses_a_database_with_no_store(database_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
    env.update(MOORAGE_HOME=str(tmp_path / "home"), MOORAGE_DATABASE_URL=database_url)
    result = subprocess.run(
        [MOORAGE, "tokens", "create", "--user", "carol"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "start `moorage serve`" in result.stderr
    assert "MOORAGE_DATABASE_URL" in result.stderr
    if database_url.startswith("sqlite"):
        assert not Path(database_url.removeprefix("sqlite:///")).exists()  # none made


def test_tokens_create_names_a_database_it_cannot_open(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
    closed = f"postgresql://moorage:secret@127.0.0.1:{free_port()}/moorage"
    env.update(MOORAGE_HOME=str(tmp_path), MOORAGE_DATABASE_URL=closed)
    result = subprocess.run(
        [MOORAGE, "tokens", "create", "--user", "carol"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "cannot open the moorage store postgresql://moorage:***@127.0.0.1" in result.stderr
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr
