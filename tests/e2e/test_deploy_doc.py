"""docs/deploy.md's "Run it", run as written on loopback: two ``moorage controller``,
two ``moorage api`` and two ``moorage gateway`` over a fresh PostgreSQL database.

The ``sh`` blocks run in one shell, in order; each ``moorage`` command is started in
the background in a session of its own (as a service manager would start it), and
the checks at the end are retried until they pass, as the parts take a moment to
listen. Only what names this machine changes, as the page's "How this page is
tested" lists: the PostgreSQL URL, ``/var/lib/moorage``, ``PRIVATE_IP``'s value, the
ports, and HAProxy's address (the first API's, as no HAProxy runs here).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import database
from tests.support.readme import section, shell_commands
from tests.support.server import free_port, wait_for

pytestmark = pytest.mark.postgres

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
DOC_URL = "postgresql://moorage:CHANGE-ME@db.internal:5432/moorage"
DOC_HOME = "/var/lib/moorage"
DOC_LB = "http://api.internal:8000"
DOC_PORTS = ("8001", "8002", "8101", "8102")
PART = re.compile(r"(^|\s)moorage (api|controller|gateway)\b")
CHECK_WITHIN_S = 60


def run_it() -> list[str]:
    return shell_commands(section("## Run it", DEPLOY.read_text()))


def localised(command: str, url: str, home: Path, ports: dict[str, int]) -> str:
    command = command.replace(DOC_URL, url).replace(DOC_HOME, str(home))
    command = command.replace(DOC_LB, f"http://127.0.0.1:{ports['8001']}")
    command = re.sub(r"^export PRIVATE_IP=\S+$", "export PRIVATE_IP=127.0.0.1", command)
    for port in DOC_PORTS:
        command = re.sub(rf"\b{port}\b", str(ports[port]), command)
    return command


def script(commands: list[str], folder: Path) -> str:
    """One shell script: the exports as they are, each part in the background (its pid
    kept in ``pids``), each check retried for up to CHECK_WITHIN_S seconds."""
    lines = ["set -euo pipefail"]
    for n, command in enumerate(commands):
        if PART.search(command):
            part = folder / f"part-{n}.sh"
            part.write_text(command + "\n")
            log = folder / f"part-{n}.log"
            lines.append(f"setsid bash {part} > {log} 2>&1 < /dev/null & echo $! >> {folder}/pids")
        elif command.startswith("export "):
            lines.append(command)
        else:
            lines.append(
                f"for i in $(seq {CHECK_WITHIN_S * 2}); do {command} > /dev/null && break; "
                f"sleep 0.5; done; {command}"
            )
    return "\n".join(lines) + "\n"


@pytest.fixture
def folder() -> Iterator[Path]:
    # Short: the APIs' private sockets live under MOORAGE_HOME (107 bytes at most).
    made = Path(tempfile.mkdtemp(prefix="mrg-", dir="/tmp"))
    try:
        yield made
    finally:
        for pid in _pids(made):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(made, ignore_errors=True)


def _pids(folder: Path) -> list[int]:
    path = folder / "pids"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _logs(folder: Path) -> str:
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')}"
        for log in sorted(folder.glob("part-*.log"))
    )


def test_the_deploy_page_runs_as_written(folder: Path, tmp_path: Path) -> None:
    commands = run_it()
    assert sum(bool(PART.search(c)) for c in commands) == 6, commands
    ports = {port: free_port() for port in DOC_PORTS}
    home = folder / "home"
    with database("postgresql", tmp_path) as url:
        text = script([localised(c, url, home, ports) for c in commands], folder)
        assert "CHANGE-ME" not in text
        assert DOC_LB not in text
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        try:
            run = subprocess.run(
                ["bash", "-c", text],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=CHECK_WITHIN_S * 3,
            )
            assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{_logs(folder)}"
            assert '"flavor_list"' in run.stdout
            wait_for(
                lambda: (
                    "is the leader (epoch 1)" in _logs(folder) and "is standing by" in _logs(folder)
                ),
                timeout=30,
                what="one controller leading and one standing by",
            )
            logs = _logs(folder)
            assert len(re.findall(r"is the leader \(epoch \d+\)", logs)) == 1, logs
            assert len(_pids(folder)) == 6
        finally:
            for pid in _pids(folder):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
            pids = _pids(folder)
            wait_for(lambda: not any(_alive(pid) for pid in pids), timeout=30, what="the end")


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_page_names_only_what_the_test_changes() -> None:
    """Every command of "Run it" is one the test knows how to run: an export, a part,
    or a check."""
    for command in run_it():
        assert (
            command.startswith("export ") or PART.search(command) or command.startswith("curl ")
        ), command
        assert shlex.split(command)
