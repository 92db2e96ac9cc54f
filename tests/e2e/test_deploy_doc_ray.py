"""docs/deploy.md's "Replicas on a Ray cluster", run as written on loopback: the head,
a GPU node, a CPU node and the control plane's own node, each ``ray start --block``
started in the background in a session of its own (as a service manager would), the
exports as they are, then moorage on that cluster serving a normal user's endpoint.

Only what names this machine changes: ``HEAD_IP``, ``NODE_IP`` and ``PRIVATE_IP``
are 127.0.0.2 (a loopback address Ray keeps; it turns 127.0.0.1 into the machine's
outward one), the port 6379 a free one, and ``/var/lib/moorage`` a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ray_cluster
from tests.support.components import need
from tests.support.readme import section, shell_commands
from tests.support.server import ApiClient, MoorageServer, free_port, new_user_token, wait_for

pytestmark = pytest.mark.ray

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
DOC_HOME = "/var/lib/moorage"


def ray_section() -> list[str]:
    return shell_commands(section("## Replicas on a Ray cluster", DEPLOY.read_text()))


def script(commands: list[str], folder: Path, port: int) -> str:
    """The block's commands in one shell: each ``ray start`` in the background, started
    again whenever it exits (its pid kept in ``pids``), the exports as they are, then
    the MOORAGE_RUNTIME and MOORAGE_RAY_* they set."""
    lines = [
        "set -euo pipefail",
        f"export HEAD_IP={ray_cluster.NODE_IP} NODE_IP={ray_cluster.NODE_IP} "
        f"PRIVATE_IP={ray_cluster.NODE_IP}",
    ]
    for n, command in enumerate(commands):
        command = re.sub(r"\b6379\b", str(port), command).replace(DOC_HOME, str(folder))
        if " ray start " in f" {command} " or command.startswith("RAY_"):
            part = folder / f"node-{n}.sh"
            # As a service manager runs it: started again when it exits (a node that
            # starts before the head is up gives up after a while).
            part.write_text(f"while true; do {command}; sleep 1; done\n")
            log = folder / f"node-{n}.log"
            lines.append(f"setsid bash {part} > {log} 2>&1 < /dev/null & echo $! >> {folder}/pids")
        else:
            assert command.startswith("export "), command
            lines.append(command)
    lines.append(f"env | grep -E '^MOORAGE_(RAY_|RUNTIME=)' > {folder}/env")
    return "\n".join(lines) + "\n"


@pytest.fixture
def folder() -> Iterator[Path]:
    made = Path(tempfile.mkdtemp(prefix="mrg-ray-", dir="/tmp"))  # short socket paths
    try:
        yield made
    finally:
        pids = made / "pids"
        if pids.exists():
            for pid in pids.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(pid), signal.SIGKILL)
        shutil.rmtree(made, ignore_errors=True)


def test_the_ray_section_runs_as_written(folder: Path) -> None:
    try:
        ray_cluster.ray_command()
    except ray_cluster.RayUnavailable as exc:
        need("ray", str(exc))
    commands = ray_section()
    assert sum("ray start" in c for c in commands) == 4, commands
    port = free_port()
    (folder / "run.sh").write_text(script(commands, folder, port))
    env = {
        **os.environ,
        **ray_cluster.LOOPBACK_ENV,
        "PATH": f"{Path(ray_cluster.ray_command()).parent}:{os.environ.get('PATH', '')}",
    }
    subprocess.run(["bash", str(folder / "run.sh")], check=True, env=env, timeout=60)
    address = f"{ray_cluster.NODE_IP}:{port}"
    try:
        wait_for(
            lambda: ray_cluster.alive_nodes(address) == 4,
            what="the four nodes of the page",
            timeout=ray_cluster.START_TIMEOUT_S * 2,
            interval=1.0,
        )
    except AssertionError as exc:
        logs = {p.name: p.read_text(errors="replace")[-1500:] for p in folder.glob("node-*.log")}
        raise AssertionError(f"{exc}; the nodes' logs: {logs}") from None
    exported = dict(line.split("=", 1) for line in (folder / "env").read_text().splitlines())
    assert exported["MOORAGE_RAY_ADDRESS"] == address
    assert exported["MOORAGE_RAY_REPLICAS_DIR"] == f"{folder}/replicas"
    assert exported["MOORAGE_RUNTIME"] == "ray"

    server = MoorageServer(
        home=folder / "home",
        database_url=f"sqlite:///{folder / 'moorage.db'}",
        runtime="process",  # as "Every host of the control plane" says; the page's wins
        extra_env={**exported, **ray_cluster.LOOPBACK_ENV},
    ).start()
    try:
        admin = ApiClient(server.url, server.admin_token or "")
        alice = ApiClient(server.url, new_user_token(admin, "alice"))

        def cpu_slots() -> int:
            flavors = alice.call("GET", "/v1/inference-service/flavor").json()["flavor_list"]
            return int(flavors[0]["available_num"])

        wait_for(lambda: cpu_slots() == 16, what="the CPU node's 16 slots", timeout=30)
        service_id = alice.create(name="on-ray")["service_id"]
        alice.wait_status(service_id, "available", timeout=90)
        answer = alice.gateway(service_id)
        assert answer.status_code == 200, answer.text
        assert cpu_slots() == 15
        replica_dirs = [p for p in (folder / "replicas").iterdir() if p.is_dir()]
        assert len(replica_dirs) == 1
        assert (folder / "replicas").stat().st_mode & 0o777 == 0o700
    finally:
        server.stop()
    assert "runtime: ray" in server.log()
