"""A real Ray cluster on this machine, every node on 127.0.0.1.

``.ci/run`` starts one of three nodes with different resources and exports
``MOORAGE_TEST_RAY_ADDRESS``; without it, the first test that needs Ray starts
such a cluster itself (where Ray is installed) and stops it at exit. A test that
kills a node starts a cluster of its own with ``Cluster``, so the shared one never
loses one.

Each node runs ``ray start --block`` in a process group of its own: stopping a node
is killing that group (its raylet, its workers; the head's GCS too), never
``ray stop``, which would stop every Ray process on the machine.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ENV_ADDRESS = "MOORAGE_TEST_RAY_ADDRESS"
# The flavor every test endpoint runs on (the built-in CPU flavor's key) is offered
# by two of the three nodes, in different amounts; one of them also has two (fake)
# GPUs of another flavor. The head offers no flavor, so it runs no replica.
CPU_FLAVOR_RESOURCE = "moorage-flavor-local_cpu"
GPU_FLAVOR_RESOURCE = "moorage-flavor-ray_gpu"
# Ray declares a node dead after this many missed health checks of this period:
# seconds, not Ray's default half a minute (docs/deploy.md says the same).
HEAD_ENV = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "4",
}
START_TIMEOUT_S = 90.0
# Ray turns ``--node-ip-address=127.0.0.1`` (and "localhost") into the machine's
# outward address; any other loopback address it keeps. So every node, and moorage
# (MOORAGE_RAY_NODE_IP), is on 127.0.0.2: the cluster's traffic stays on loopback.
NODE_IP = "127.0.0.2"
LOOPBACK_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


class RayUnavailable(Exception):
    pass


def ray_command() -> str:
    found = Path(sys.executable).with_name("ray")
    if found.exists():
        return str(found)
    which = shutil.which("ray")
    if which is None:
        raise RayUnavailable("Ray is not installed (pip install 'moorage[ray]')")
    return which


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """Kills the node as a machine dies: its raylet and workers (and, for the head,
        its GCS), at once, with no word to anyone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


@dataclass
class Cluster:
    """A head and worker nodes started by this process; ``stop`` ends them all."""

    root: Path
    port: int = field(default_factory=_free_port)
    nodes: list[Node] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{NODE_IP}:{self.port}"

    def _start(self, name: str, args: list[str], env: Mapping[str, str]) -> Node:
        log = self.root / f"{name}.log"
        with log.open("ab") as output:
            process = subprocess.Popen(
                [ray_command(), "start", "--block", f"--node-ip-address={NODE_IP}", *args],
                env={**os.environ, **LOOPBACK_ENV, **env},
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        node = Node(name, process, log)
        self.nodes.append(node)
        return node

    def start_head(self, resources: Mapping[str, float], num_gpus: int = 0) -> Node:
        node = self._start(
            "head",
            [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                "--disable-usage-stats",
                "--num-cpus=2",
                f"--num-gpus={num_gpus}",
                f"--resources={json.dumps(dict(resources))}",
                f"--temp-dir={self.root / 'ray'}",
            ],
            HEAD_ENV,
        )
        self._wait_for_nodes(1, node)
        return node

    def add_node(self, name: str, resources: Mapping[str, float], num_gpus: int = 0) -> Node:
        node = self._start(
            name,
            [
                f"--address={self.address}",
                "--num-cpus=2",
                f"--num-gpus={num_gpus}",
                f"--resources={json.dumps(dict(resources))}",
                f"--temp-dir={self.root / 'ray'}",
            ],
            {},
        )
        self._wait_for_nodes(len(self.nodes), node)
        return node

    def _wait_for_nodes(self, count: int, starting: Node) -> None:
        """Polls ``ray status`` until ``count`` nodes are alive."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if starting.process.poll() is not None:
                raise RayUnavailable(
                    f"ray node {starting.name} exited: {starting.log.read_text()[-2000:]}"
                )
            if alive_nodes(self.address) >= count:
                return
            time.sleep(0.5)
        raise RayUnavailable(f"{count} Ray nodes never came up; see {starting.log}")

    def stop(self) -> None:
        """Kills every node's process group: a test cluster keeps nothing worth a
        graceful stop (Ray's own takes half a minute on a busy machine)."""
        for node in reversed(self.nodes):
            node.kill()
        self.nodes.clear()


def alive_nodes(address: str) -> int:
    """How many nodes the cluster at ``address`` counts alive (0 when it answers not)."""
    result = subprocess.run(
        [ray_command(), "status", f"--address={address}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, **LOOPBACK_ENV},
    )
    if result.returncode != 0:
        return 0
    active = result.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return sum(1 for line in active.splitlines() if "node_" in line)


def three_nodes(root: Path) -> Cluster:
    """The cluster CI starts (see ``CPU_FLAVOR_RESOURCE``)."""
    cluster = Cluster(root)
    try:
        cluster.start_head({})
        cluster.add_node("cpu", {CPU_FLAVOR_RESOURCE: 8})
        cluster.add_node("mixed", {CPU_FLAVOR_RESOURCE: 4, GPU_FLAVOR_RESOURCE: 2}, num_gpus=2)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@cache
def address() -> str:
    """The shared cluster's address: CI's, or one started for this test process."""
    given = os.environ.get(ENV_ADDRESS)
    if given:
        return given
    ray_command()
    root = Path(tempfile.mkdtemp(prefix="moorage-test-ray-"))
    cluster = three_nodes(root)

    def stop() -> None:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    return cluster.address


@contextlib.contextmanager
def own_cluster() -> Iterator[Cluster]:
    """A cluster for one test, stopped after it, whatever happened."""
    root = Path(tempfile.mkdtemp(prefix="moorage-test-ray-"))
    cluster = Cluster(root)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


_KILL_ACTORS = """
import sys, ray
ray.init(address=sys.argv[1], namespace=sys.argv[2], _node_ip_address=sys.argv[3],
         log_to_driver=False, configure_logging=False)
for name in ray.util.list_named_actors():
    try:
        ray.kill(ray.get_actor(name), no_restart=True)
    except ValueError:
        pass
"""


def kill_actors(cluster_address: str, namespace: str) -> None:
    """Ends every named actor of a namespace (an installation's replicas, which outlive a
    moorage killed with SIGKILL): a test leaves the shared cluster's slots free."""
    subprocess.run(
        [sys.executable, "-c", _KILL_ACTORS, cluster_address, namespace, NODE_IP],
        env={**os.environ, **LOOPBACK_ENV},
        capture_output=True,
        timeout=120,
        check=False,
    )


def main(argv: list[str]) -> int:
    """``python -m tests.support.ray_cluster DIR``: starts the three-node cluster in DIR,
    prints ``address HOST:PORT`` once it is up, and stops it on SIGTERM or SIGINT
    (``.ci/run`` runs it so every test worker shares one cluster)."""
    if len(argv) != 2:
        print("usage: python -m tests.support.ray_cluster DIR", file=sys.stderr)
        return 2
    cluster = three_nodes(Path(argv[1]))
    print(f"address {cluster.address}", flush=True)

    def stop(*_: object) -> None:
        cluster.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
