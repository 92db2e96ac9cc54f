"""Failures you can see: how fast moorage replaces the replicas of a lost Ray node, and
how fast a standby ``moorage controller`` takes over from a killed leader.

One command, from the repository root:

    .venv/bin/python bench/cluster.py [--quick] [--skip-node-loss] [--skip-failover]

1. **Node loss** (Ray runtime). A Ray cluster of its own on loopback (a head that
   offers no flavor, two nodes of the CPU flavor, 4 slots each; Ray declares a node
   dead after 4 missed health checks of 0.5 s, as docs/deploy.md advises), ``moorage
   serve`` on it (SQLite), a normal user, and per round an endpoint of 2 replicas of
   the test app (Ray spreads them, one per node). A thread sends idempotent GETs through
   the gateway, one after another. Then the node that holds one replica is killed as a
   machine dies (its raylet and workers, SIGKILL), and a monitor polling every 0.1 s
   times until the endpoint's ``ready_replicas`` drops (the lost replica out of
   rotation) and until it is back to 2 ready replicas whose processes all run under
   surviving nodes; every answer but a 200 counts as a failed request. A fresh node
   joins before the next round. **Peer, measured in the same kill**: Ray's own actor
   fault tolerance, what Ray Serve builds on: a driver in a subprocess places a
   detached actor (``max_restarts=-1``, one slot of the CPU flavor) on the node about
   to die, then calls it until it answers from another node.
2. **Controller failover** (PostgreSQL). ``moorage api`` and two ``moorage
   controller`` (process runtime, sandbox off) over one database; a thread creates an
   endpoint every 0.5 s (deleting its oldest beyond three). The leader's process group
   gets SIGKILL; timed until the standby logs that it leads (a new epoch) and until an
   endpoint created right after the kill is ``available``; a watcher looks every 50 ms
   for a replica id run by two processes. The killed controller is started again as
   the new standby for the next round. **Peer, in the same run**: the same election
   with Kubernetes client-go's default timings (lease 15 s, retry 2 s), which
   Knative's and KServe's controllers use.

Beside them, the tables give Kubernetes' and Ray Serve's published defaults, which are
not measured here. Rounds: 3 each (1 with ``--quick``, about 4 minutes); the full run
takes about 7 minutes. Every figure is up to one poll late. Timings move with the CPU: the
cluster, moorage and the load share this machine; compare the rows of one run.
Everything started is stopped when the run ends, however it ends (Ctrl-C included).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import ray_cluster  # noqa: E402
from tests.support.postgres import admin_url, fresh_database  # noqa: E402
from tests.support.server import (  # noqa: E402
    ApiClient,
    MoorageServer,
    endpoint_body,
    new_user_token,
    wait_for,
)
from tests.support.split import LEADER, REPLICA_COMMAND, Part, Split  # noqa: E402
from tests.support.watching import DuplicateWatch, GetLoad, replicas_under  # noqa: E402

BASE = "/v1/inference-service"
POLL_S = 0.1
ROUND_LIMIT_S = 180.0
ENDPOINT_ENV = "MOORAGE_ENDPOINT_ID"
NODE_SLOTS = 4
PROBE_NAMESPACE = "moorage-bench-probe"
CLIENT_GO = {"MOORAGE_LEADER_LEASE_S": "15", "MOORAGE_LEADER_RENEW_S": "2"}
CLIENT_GO_LABEL = (
    "moorage's election with client-go's default timings (Knative/KServe controllers use them)"
)
NODE_LOSS_PUBLISHED = [
    (
        "Kubernetes / KServe",
        "node-monitor-grace-period 40 s + NotReady toleration 300 s before pods are "
        "evicted and replaced: about 340 s",
    ),
    (
        "Ray Serve",
        "replica health check every 10 s, timeout 30 s (on top of Ray's node death, "
        "30 s at Ray's defaults)",
    ),
]


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def until(condition: Callable[[], Any], limit_s: float, what: str) -> float:
    """Seconds until ``condition`` holds, polling every POLL_S; fails past ``limit_s``."""
    started = time.monotonic()
    wait_for(condition, timeout=limit_s, interval=POLL_S, what=what)
    return time.monotonic() - started


def median_max(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.2f} s / {max(values):.2f} s"


# --- part 1: node loss ----------------------------------------------------------------


def replicas_by_node(nodes: list[ray_cluster.Node], service_id: str) -> dict[str, set[str]]:
    """Node name -> the endpoint's replica ids whose processes run under that node's."""
    found: dict[str, set[str]] = {node.name: set() for node in nodes}
    for node in nodes:
        found[node.name] = set(replicas_under(node.process.pid, service_id))
    return found


# A driver of its own: Ray's actor fault tolerance, timed from the same kill. It prints
# CLOCK_MONOTONIC readings, which every process on the machine shares.
_PROBE = """
import sys, time, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
address, node_ip, marker, flavor, namespace, name = sys.argv[1:7]
ray.init(address=address, _node_ip_address=node_ip, namespace=namespace,
         log_to_driver=False, configure_logging=False)
target = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and marker in n["Resources"])

@ray.remote
class Probe:
    def where(self):
        return ray.get_runtime_context().get_node_id()

probe = Probe.options(
    name=name, lifetime="detached", max_restarts=-1, num_cpus=0, resources={flavor: 1},
    scheduling_strategy=NodeAffinitySchedulingStrategy(target, soft=True),
).remote()
first = ray.get(probe.where.remote(), timeout=120)
print("ready", "on-target" if first == target else "elsewhere", flush=True)
sys.stdin.readline()
deadline = time.monotonic() + 180
try:
    while time.monotonic() < deadline:
        try:
            node = ray.get(probe.where.remote(), timeout=0.1)
        except ray.exceptions.GetTimeoutError:
            continue
        except ray.exceptions.RayError:  # the actor failed; Ray restarts it
            time.sleep(0.05)
            continue
        if node != target:
            print("answered", time.monotonic(), flush=True)
            break
    else:
        print("gave-up", flush=True)
finally:
    ray.kill(probe, no_restart=True)
"""


class RayProbe:
    """The peer's driver subprocess; ``close`` ends it whatever state it is in."""

    def __init__(self, cluster: ray_cluster.Cluster, marker: str, name: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _PROBE,
                cluster.address,
                ray_cluster.NODE_IP,
                marker,
                ray_cluster.CPU_FLAVOR_RESOURCE,
                PROBE_NAMESPACE,
                name,
            ],
            env={**os.environ, **ray_cluster.LOOPBACK_ENV},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def ready(self) -> bool:
        if any(line.startswith("ready") for line in self.lines):
            return True
        if self.process.poll() is not None:
            raise RuntimeError("the Ray probe's driver exited before its actor answered")
        return False

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def answered_at(self, limit_s: float) -> float | None:
        """When it answered from another node (CLOCK_MONOTONIC); None if it gave up."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith("answered"):
                    return float(line.split()[1])
                if line == "gave-up":
                    return None
            if self.process.poll() is not None and not self._reader.is_alive():
                return None
            time.sleep(POLL_S)
        return None

    def close(self) -> None:
        """Lets a driver that is done end its actor (``ray.kill``), then kills it."""
        if self._answered():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def _answered(self) -> bool:
        return any(line.startswith(("answered", "gave-up")) for line in self.lines)


@dataclass
class NodeRound:
    out_of_rotation_s: float | None
    replaced_s: float
    failed: int
    requests: int
    ray_actor_s: float | None
    killed: str
    failures: list[str]


def _marker(name: str) -> str:
    return f"bench-node-{name}"


def add_flavor_node(cluster: ray_cluster.Cluster, name: str) -> ray_cluster.Node:
    resources = {ray_cluster.CPU_FLAVOR_RESOURCE: NODE_SLOTS, _marker(name): 1}
    return cluster.add_node(name, resources)


def node_loss_round(
    cluster: ray_cluster.Cluster, user: ApiClient, number: int, rounds: int
) -> NodeRound:
    workers = [node for node in cluster.nodes if node.name != "head"]
    service_id = str(
        user.create(name=f"node-loss-{number}", resource_metadata={"target_instance_number": 2})[
            "service_id"
        ]
    )
    probe: RayProbe | None = None
    load: GetLoad | None = None
    try:
        wait_for(
            lambda: user.get(service_id)["endpoint_metadata"]["ready_replicas"] == 2,
            timeout=120,
            what="two ready replicas",
        )

        def spread() -> dict[str, set[str]] | None:
            found = replicas_by_node(workers, service_id)
            return found if all(len(ids) == 1 for ids in found.values()) else None

        placed: dict[str, set[str]] = wait_for(spread, timeout=30, what="a replica on each node")
        victim = workers[0]  # the older node: it holds one replica
        survivor_names = {n.name for n in workers if n is not victim}
        lost = next(iter(placed[victim.name]))
        probe = RayProbe(cluster, _marker(victim.name), f"probe-{number}")
        wait_for(probe.ready, timeout=180, what="the Ray probe's actor on the victim node")
        load = GetLoad(user, service_id).start()
        wait_for(lambda: load is not None and load.answered >= 20, timeout=60, what="load")
        say(f"round {number}/{rounds}: killing node {victim.name} (replica {lost[:8]}) ...")
        probe.go()
        killed_at = time.monotonic()
        victim.kill()
        out_of_rotation: float | None = None
        deadline = killed_at + ROUND_LIMIT_S
        while time.monotonic() < deadline:
            ready = user.get(service_id)["endpoint_metadata"]["ready_replicas"]
            now = time.monotonic()
            if ready < 2 and out_of_rotation is None:
                out_of_rotation = now - killed_at
            if ready == 2 and out_of_rotation is not None:
                found = replicas_by_node(cluster.nodes, service_id)
                on_survivors = set().union(*(found.get(n, set()) for n in survivor_names))
                if len(on_survivors) == 2 and not found.get(victim.name):
                    break
            time.sleep(POLL_S)
        else:
            raise RuntimeError(f"round {number}: not back to 2 replicas in {ROUND_LIMIT_S} s")
        replaced = time.monotonic() - killed_at
        answered = probe.answered_at(ROUND_LIMIT_S)
        load.stop()
        cluster.nodes.remove(victim)
        result = NodeRound(
            out_of_rotation_s=out_of_rotation,
            replaced_s=replaced,
            failed=len(load.failures),
            requests=load.answered + len(load.failures),
            ray_actor_s=None if answered is None else answered - killed_at,
            killed=victim.name,
            failures=load.failures[:3],
        )
        say(
            f"round {number}/{rounds}: node {victim.name} killed: out of rotation "
            f"{_s(result.out_of_rotation_s)}, 2 ready on survivors {result.replaced_s:.2f} s, "
            f"{result.failed} of {result.requests} requests failed; Ray actor answered "
            f"from another node {_s(result.ray_actor_s)}"
        )
        for failure in result.failures:
            say(f"  failed request: {failure}")
        return result
    finally:
        if load is not None:
            load.stop()
        if probe is not None:
            probe.close()
        with contextlib.suppress(Exception):
            user.call("DELETE", f"{BASE}/{service_id}")


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def run_node_loss(rounds: int) -> list[NodeRound]:
    ray_cluster.ray_command()
    results: list[NodeRound] = []
    home = Path(tempfile.mkdtemp(prefix="mrg-"))  # short: sandbox socket paths are bounded
    # moorage stops before the cluster does (the with's end), however the run ends.
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, home, ignore_errors=True)
        cluster = stack.enter_context(ray_cluster.own_cluster())
        say("node loss: starting a Ray cluster (a head and two nodes) ...")
        cluster.start_head({})
        add_flavor_node(cluster, "a")
        add_flavor_node(cluster, "b")
        server = MoorageServer(
            home=home,
            database_url=f"sqlite:///{home / 'moorage.db'}",
            runtime="ray",
            extra_env={
                "MOORAGE_RAY_ADDRESS": cluster.address,
                "MOORAGE_RAY_NODE_IP": ray_cluster.NODE_IP,
                **ray_cluster.LOOPBACK_ENV,
            },
        )
        stack.callback(_stop_quietly, server)
        server.start()
        admin = ApiClient(server.url, server.admin_token or "")
        user = ApiClient(server.url, new_user_token(admin, "bench"))
        names = iter("cdefghijklmnop")
        for number in range(1, rounds + 1):
            results.append(node_loss_round(cluster, user, number, rounds))
            if number == rounds:
                break
            fresh = next(names)
            say(f"round {number}/{rounds}: adding node {fresh} ...")
            add_flavor_node(cluster, fresh)
            wait_for(
                lambda: _flavor_capacity(user) >= 2 * NODE_SLOTS,
                timeout=60,
                what="moorage to count the fresh node's slots",
            )
    return results


def _stop_quietly(server: MoorageServer) -> None:
    with contextlib.suppress(Exception):
        server.stop()


def _flavor_capacity(user: ApiClient) -> int:
    flavors = user.call("GET", f"{BASE}/flavor").json()["flavor_list"]
    return int(flavors[0]["available_num"])


def node_loss_table(results: list[NodeRound]) -> list[str]:
    outs = [r.out_of_rotation_s for r in results if r.out_of_rotation_s is not None]
    replaced = [r.replaced_s for r in results]
    actor = [r.ray_actor_s for r in results if r.ray_actor_s is not None]
    failed = sum(r.failed for r in results)
    sent = sum(r.requests for r in results)
    lines = [
        "| system | lost replica out of rotation | back to full strength on surviving "
        "nodes | failed requests |",
        "|---|---|---|---|",
        f"| **moorage** (Ray runtime), median / max of {len(results)} | {median_max(outs)} "
        f"| {median_max(replaced)} (2 ready replicas) | {failed} of {sent} |",
        "| Ray actor fault tolerance (`max_restarts=-1`), same kills | n/a (no rotation) "
        f"| {median_max(actor)} (the actor answers from another node) | n/a |",
    ]
    for system, what in NODE_LOSS_PUBLISHED:
        lines.append(f"| {system}: published default, not measured | | {what} | |")
    lines.append("")
    lines.append(
        "| round | node killed | moorage out of rotation | moorage 2 ready | failed "
        "| Ray actor answers |"
    )
    lines.append("|---|---|---|---|---|---|")
    for number, r in enumerate(results, 1):
        lines.append(
            f"| {number} | {r.killed} | {_s(r.out_of_rotation_s)} | {r.replaced_s:.2f} s "
            f"| {r.failed} of {r.requests} | {_s(r.ray_actor_s)} |"
        )
    for number, r in enumerate(results, 1):
        lines.extend(f"\nround {number}, failed request: `{f}`" for f in r.failures)
    return lines


# --- part 2: controller failover ------------------------------------------------------


class Creates:
    """An endpoint created every 0.5 s, the oldest deleted beyond three (the CPU flavor
    runs eight replicas); refusals and errors are counted."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.created = 0
        self.failures: list[str] = []
        self._live: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._flavor = client.flavor_id()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                body = endpoint_body(
                    self._flavor, name=f"stream-{n}", deploy_metadata={"command": REPLICA_COMMAND}
                )
                answer = self.client.call("POST", BASE, json=body)
                if answer.status_code == 200:
                    self.created += 1
                    self._live.append(str(answer.json()["service_id"]))
                else:
                    self.failures.append(f"{answer.status_code}: {answer.text[:200]}")
                while len(self._live) > 3:
                    self.client.call("DELETE", f"{BASE}/{self._live.pop(0)}")
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
            self._stop.wait(0.5)

    def wait_for_more(self, count: int) -> None:
        wanted = self.created + count
        wait_for(lambda: self.created >= wanted, timeout=60, what=f"{count} more creates")

    def __enter__(self) -> Creates:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@dataclass
class FailoverRound:
    takeover_s: float
    available_s: float
    epoch: int
    duplicates: int


def _epoch(part: Part) -> int:
    epochs = [int(m.group(2)) for m in LEADER.finditer(part.log())]
    return max(epochs, default=0)


def _stands_by(part: Part) -> None:
    wait_for(lambda: "standing by" in part.log(), timeout=60, what=f"{part.name} to stand by")


def failover_round(
    client: ApiClient, leader: Part, standby: Part, duplicates: DuplicateWatch, label: str
) -> FailoverRound:
    """Kills ``leader``'s process group; times ``standby``'s takeover and an endpoint
    created right after the kill."""
    before = _epoch(leader)
    found_before = len(duplicates.duplicates)
    say(f"{label}: killing leader {leader.name} (epoch {before}) ...")
    killed_at = time.monotonic()
    leader.send(signal.SIGKILL)
    created = client.create(name="after-kill", deploy_metadata={"command": REPLICA_COMMAND})
    service_id = str(created["service_id"])
    try:
        takeover = wait_for(
            lambda: _epoch(standby) > before and time.monotonic(),
            timeout=ROUND_LIMIT_S,
            interval=0.05,
            what=f"{standby.name} to lead",
        )
        wait_for(
            lambda: client.get(service_id)["status"] == "available",
            timeout=ROUND_LIMIT_S,
            interval=POLL_S,
            what="the endpoint created after the kill to be available",
        )
        available_s = time.monotonic() - killed_at
    finally:
        with contextlib.suppress(Exception):
            client.call("DELETE", f"{BASE}/{service_id}")
    leader.stop(signal.SIGKILL, timeout=5)
    result = FailoverRound(
        float(takeover) - killed_at,
        available_s,
        _epoch(standby),
        len(duplicates.duplicates) - found_before,
    )
    say(
        f"{label}: {standby.name} leads (epoch {result.epoch}) after {result.takeover_s:.2f} s; "
        f"endpoint created after the kill available after {available_s:.2f} s; "
        f"replicas run twice: {result.duplicates}"
    )
    return result


def run_failover(rounds: int, label: str, extra: dict[str, str]) -> tuple[list[FailoverRound], int]:
    """Rounds of a killed leader; returns them and the number of failed creates."""
    results: list[FailoverRound] = []
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(fresh_database(admin_url()))
        home = Path(tempfile.mkdtemp(prefix="mrg-"))
        stack.callback(shutil.rmtree, home, ignore_errors=True)
        split = Split(home, database_url)
        stack.callback(split.close)
        api = split.api("api")
        split.wait_answering(api)
        client = split.client(api)
        names = iter(f"c{i}" for i in range(1, 100))
        leader = split.leader(split.controller(next(names), **extra), timeout=60)
        standby = split.controller(next(names), **extra)
        _stands_by(standby)
        creates = stack.enter_context(Creates(client))
        duplicates = stack.enter_context(DuplicateWatch(home))
        for number in range(1, rounds + 1):
            creates.wait_for_more(4)
            tag = f"{label}: round {number}/{rounds}"
            results.append(failover_round(client, leader, standby, duplicates, tag))
            if number < rounds:
                leader, standby = standby, split.controller(next(names), **extra)
                _stands_by(standby)
        failed = len(creates.failures)
    return results, failed


def failover_table(
    moorage: list[FailoverRound], moorage_failed: int, peer: list[FailoverRound], peer_failed: int
) -> list[str]:
    def row(label: str, lease: str, results: list[FailoverRound], failed: int) -> str:
        takeover = median_max([r.takeover_s for r in results])
        available = median_max([r.available_s for r in results])
        twice = sum(r.duplicates for r in results)
        return (
            f"| {label} | {lease} | {len(results)} | {takeover} | {available} | {twice} "
            f"| {failed} |"
        )

    lines = [
        "| election | lease / renew | rounds | standby leads (median / max) | endpoint "
        "created after the kill available (median / max) | replicas run twice | failed "
        "creates |",
        "|---|---|---|---|---|---|---|",
        row("**moorage** (defaults)", "3 s / 1 s", moorage, moorage_failed),
        row(CLIENT_GO_LABEL, "15 s / 2 s", peer, peer_failed),
        "",
        "| round | election | standby leads | endpoint available | epoch |",
        "|---|---|---|---|---|",
    ]
    for label, results in (("moorage", moorage), ("client-go timings", peer)):
        for number, r in enumerate(results, 1):
            lines.append(
                f"| {number} | {label} | {r.takeover_s:.2f} s | {r.available_s:.2f} s | {r.epoch} |"
            )
    return lines


# --- the run --------------------------------------------------------------------------


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def machine() -> str:
    one, five, fifteen = os.getloadavg()
    return (
        f"{os.cpu_count()} cores, load average {one:.2f} / {five:.2f} / {fifteen:.2f} "
        "(1 / 5 / 15 min); the cluster, moorage and the load share them with whatever "
        "else runs here"
    )


@contextlib.contextmanager
def stopped_on_sigterm() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="one round of each")
    parser.add_argument("--skip-node-loss", action="store_true", help="no Ray cluster")
    parser.add_argument("--skip-failover", action="store_true", help="no PostgreSQL")
    args = parser.parse_args()
    rounds = 1 if args.quick else 3
    with stopped_on_sigterm():
        print(f"machine: {machine()}\n", flush=True)
        if not args.skip_node_loss:
            node_rounds = run_node_loss(rounds)
            print("### Node loss (Ray runtime)\n")
            print(
                "Ray declares a node dead after 4 missed health checks of 0.5 s "
                "(RAY_health_check_*, as docs/deploy.md advises); both rows rely on it.\n"
            )
            print("\n".join(node_loss_table(node_rounds)) + "\n", flush=True)
        if not args.skip_failover:
            moorage, moorage_failed = run_failover(rounds, "moorage", {})
            peer, peer_failed = run_failover(1, "client-go timings", dict(CLIENT_GO))
            print("### Controller failover (PostgreSQL)\n")
            print("\n".join(failover_table(moorage, moorage_failed, peer, peer_failed)) + "\n")
        print(f"machine at the end: {machine()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
