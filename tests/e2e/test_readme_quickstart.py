"""The README's Quickstart, run as written: a new user's first steps with the CLI.

``moorage serve`` starts as ``make serve`` runs it (its home ``.moorage`` in the
folder, its admin token made on first start and kept in ``.moorage/admin-token``);
the Quickstart's commands then run in one shell in that folder, in order. Only what
names this host changes: the suite's virtual environment for ``.venv``, the
server's port for 8080 (``MOORAGE_PORT``, as a user who moved it would set), and a
config file of the test's own, so a developer's ``moorage login`` cannot leak in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import database
from tests.support.readme import section, shell_commands
from tests.support.server import ApiClient, MoorageServer

VENV_BIN = Path(sys.executable).parent
SEPARATOR = "=== next command ==="


def readme_steps() -> list[str]:
    """The Quickstart's commands after ``make serve`` (the fixture runs the server)."""
    commands = shell_commands(section("## Quickstart"))
    assert commands[0] == "make serve", commands
    return commands[1:]


@pytest.fixture
def folder() -> Iterator[Path]:
    # Short: a replica's socket path must fit the 107 bytes of a Unix socket's.
    made = Path(tempfile.mkdtemp(prefix="mrg-", dir="/tmp"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def test_the_quickstart_runs_as_written(folder: Path, tmp_path: Path) -> None:
    steps = readme_steps()
    assert any(step.startswith("SERVICE_ID=$(moorage endpoints create") for step in steps)
    with database("sqlite", tmp_path) as url:
        server = MoorageServer(
            home=folder / ".moorage",
            database_url=url,
            admin_token=None,  # made on first start and kept in .moorage/admin-token
            extra_env={"MOORAGE_HOME": ".moorage"},
            cwd=folder,
        ).start()
        try:
            script = "\n".join(
                ["set -euo pipefail"]
                + [f"echo '{SEPARATOR}'; {here(step, server.port)}" for step in steps]
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
            env.update(
                MOORAGE_PORT=str(server.port),
                MOORAGE_CLIENT_CONFIG=str(tmp_path / "no-login" / "config.toml"),
                TERM="dumb",
            )
            run = subprocess.run(
                ["bash", "-c", script],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{server.log()}"
            outputs = dict(zip(steps, run.stdout.split(SEPARATOR + "\n")[1:], strict=True))
            check_outputs(
                outputs,
                ApiClient(server.url, (folder / ".moorage/admin-token").read_text().strip()),
            )
        finally:
            server.stop()


def here(step: str, port: int) -> str:
    step = step.replace("source .venv/bin/activate", f"export PATH={VENV_BIN}:$PATH")
    return step.replace("127.0.0.1:8080", f"127.0.0.1:{port}")


def check_outputs(outputs: dict[str, str], admin: ApiClient) -> None:
    """What a reader sees at each step."""
    flavors = next(out for step, out in outputs.items() if step == "moorage flavors")
    assert "CPU" in flavors
    served = next(out for step, out in outputs.items() if step.startswith("curl "))
    assert "Directory listing" in served
    listed = next(out for step, out in outputs.items() if step == "moorage ls")
    assert "web" in listed
    assert "available" in listed
    events = next(
        out for step, out in outputs.items() if step.startswith("moorage endpoints events")
    )
    assert "created" in events
    # Deleted at the end: no endpoint of the admin's is left.
    page = admin.call("GET", "/v1/inference-service").json()
    assert [e["name"] for e in page["service_list"] if not e["is_deleted"]] == []
    ids = re.findall(r"[0-9a-f]{32}", "".join(outputs.values()))
    assert ids, "the quickstart printed no service_id"
