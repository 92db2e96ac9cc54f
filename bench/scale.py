"""The control plane at scale: 10,000 endpoints and 50,000 replicas on the fake runtime.

One command:

    .venv/bin/python bench/scale.py [--endpoints 10000 --replicas 50000]
                                    [--database sqlite|postgresql://...]

What it does, in order, printing progress on stderr:

1. Seeds the store **straight through the store's repositories** (not the API, which
   would take an hour at this size): ``--endpoints`` endpoints of the admin, all
   stopped but ``--running`` of them, and ``--replicas`` replicas spread over them,
   each with the four events of a replica that ran and stopped (requested, started,
   ready, stopped). The running endpoints get their live replicas from the
   controller, on the fake runtime, as in production.
2. Starts ``moorage serve`` with ``MOORAGE_RUNTIME=fake`` on that store and waits
   until the running endpoints are available.
3. Measures, with ``--clients`` concurrent connections from wrk (C, one thread, so
   the load takes little of the server's CPU), each sending its next request when
   the last is answered, for ``--seconds`` each: GET one endpoint (a random one of
   all) and GET a page of 100 (a random page): p50, p99 and the rate.
4. PUT to the runtime's action: scales a running endpoint up by one and reads the
   server's JSON log for the time its new replica started (logged right after the
   runtime's ``start`` returned); the bench asks the server nothing meanwhile.
5. Stops the running endpoints, so every endpoint is stopped, and reads the
   server's CPU time from /proc/<pid>/stat over ``--idle-seconds``, and its RSS.
6. Stops the server and times reconcile passes in this process against the same
   store (same code, a fresh fake runtime): a full resync (every stopped endpoint's
   route entry reloaded) and a quiet pass.

Then prints the table with the targets. Every figure depends on the machine: run it
on the one you mean to serve from.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backends import (
    Processes,
    free_port,
    moorage_executable,
    process_tree,
    run_wrk,
    wait_http,
)

from moorage.clock import SystemClock
from moorage.composition import MoorageServer
from moorage.controller.idle_routes import IdleRoutes
from moorage.controller.plan import PlanPolicy
from moorage.controller.reconciler import Reconciler
from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint
from moorage.models.replicas import ReplicaEventKind
from moorage.runtimes.fake import FakeRuntime
from moorage.settings import Settings
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.tables import ReplicaEventRow, ReplicaRow
from moorage.wire import new_id

API = "/v1/inference-service"
FLAVOR_ID = "0" * 31 + "1"
FLAVORS = f"""
[[flavor]]
flavor_id = "{FLAVOR_ID}"
display_name = "bench"
cluster_id = "bench"
cluster_flavor_id = "bench"
capacity = 1000000
node_max_gpu = 0
meta_info = {{ region = "bench" }}
billing = {{ usd_price_unit = 0.1 }}
"""
# wrk's requests, each a random line of the file named after "--".
WRK_PATHS = """
local paths = {}
function init(args)
  math.randomseed(os.time())
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
end
function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
"""
TARGETS = {
    "GET one endpoint p99": ("ms", 50.0),
    "GET a page of 100 p99": ("ms", 100.0),
    "full resync pass": ("ms", 1000.0),
    "PUT to the runtime's action": ("ms", 200.0),
    "idle CPU, all stopped": ("% of a core", 2.0),
}


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Figures:
    rows: list[tuple[str, float, str]]

    def add(self, name: str, value: float, unit: str) -> None:
        self.rows.append((name, value, unit))
        say(f"{name}: {value:,.1f} {unit}")

    def table(self) -> str:
        lines = [f"{'measure':32} {'value':>12}  {'unit':12} {'target':>8}  ok"]
        for name, value, unit in self.rows:
            target = TARGETS.get(name)
            mark = "" if target is None else ("yes" if value <= target[1] else "NO")
            shown = "" if target is None else f"<= {target[1]:g}"
            lines.append(f"{name:32} {value:>12,.1f}  {unit:12} {shown:>8}  {mark}")
        return "\n".join(lines)


# -- seeding ----------------------------------------------------------------------


def seed(db: Database, endpoints: int, replicas: int, running: int, per_running: int) -> list[str]:
    """Writes the endpoints and their replicas' history; returns the endpoint ids,
    the running ones first."""
    with db.session() as session:
        admin = AccountRepository(session).user_by_name("admin")
        assert admin is not None, "the server's prepare() makes the admin"
        user_id = admin.user_id
    ids = [new_id() for _ in range(endpoints)]
    start = datetime.now(UTC) - timedelta(days=1)
    deploy = DeploySpec(image_url="bench", command="serve", port=8000)
    batch = 1000
    for first in range(0, endpoints, batch):
        with db.session() as session:
            repository = EndpointRepository(session)
            for index in range(first, min(first + batch, endpoints)):
                at = start + timedelta(seconds=index)
                endpoint = Endpoint(
                    service_id=ids[index],
                    user_id=user_id,
                    name=f"bench-{index:06d}",
                    description="",
                    payment_type="usd",
                    flavor_id=FLAVOR_ID,
                    scale_type="manual",
                    target_instance_number=per_running if index < running else 1,
                    deploy=deploy,
                    revision=1,
                    desired_state=DesiredState.RUNNING if index < running else DesiredState.STOPPED,
                    service_type="normal",
                    created_at=at,
                    updated_at=at,
                )
                repository.add(endpoint)
                repository.add_revision(endpoint)
        say(f"endpoints: {min(first + batch, endpoints):,} of {endpoints:,}")
    batch = 5000
    for first in range(0, replicas, batch):
        replica_rows, event_rows = [], []
        for index in range(first, min(first + batch, replicas)):
            replica_id, endpoint_id = new_id(), ids[index % endpoints]
            at = start + timedelta(seconds=index % 86000)
            replica_rows.append(
                {
                    "replica_id": replica_id,
                    "endpoint_id": endpoint_id,
                    "revision": 1,
                    "created_at": at,
                    "finished": True,
                }
            )
            for step, kind in enumerate(
                (
                    ReplicaEventKind.REQUESTED,
                    ReplicaEventKind.STARTED,
                    ReplicaEventKind.READY,
                    ReplicaEventKind.STOPPED,
                )
            ):
                event_rows.append(
                    {
                        "replica_id": replica_id,
                        "endpoint_id": endpoint_id,
                        "kind": kind.value,
                        "at": at + timedelta(seconds=step),
                        "address": "127.0.0.1:9" if kind is ReplicaEventKind.STARTED else None,
                        "reason": None,
                        "detail": "bench history" if kind is ReplicaEventKind.STOPPED else None,
                    }
                )
        with db.session() as session:
            session.execute(insert(ReplicaRow), replica_rows)
            session.execute(insert(ReplicaEventRow), event_rows)
        say(f"replicas: {min(first + batch, replicas):,} of {replicas:,}")
    return ids


# -- measuring ----------------------------------------------------------------------


class ServerLog:
    """Lifecycle records from the server's JSON log (MOORAGE_LOG_FORMAT=json): when a
    replica started, as the server saw it, without asking the server anything."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def skip_to_end(self) -> None:
        self.offset = self.path.stat().st_size

    async def wait(self, event: str, endpoint_id: str, deadline_s: float) -> float:
        """The time (epoch seconds) of the next ``event`` record for the endpoint."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                data = log.read()
            complete = data[: data.rfind(b"\n") + 1]
            self.offset += len(complete)
            for line in complete.splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("event") == event and record.get("endpoint_id") == endpoint_id:
                        return datetime.fromisoformat(record["time"]).timestamp()
            await asyncio.sleep(0.01)
        raise RuntimeError(f"no {event} logged for endpoint {endpoint_id} in {deadline_s} s")


async def put_to_action(
    client: httpx.AsyncClient, log: ServerLog, service_id: str, tries: int
) -> tuple[list[float], list[float]]:
    """Scales up by one and reads from the server's log when the runtime started the
    new replica; then back down. Returns the times to the PUT's answer and to the
    start, in ms (the log's times have millisecond precision)."""
    answered: list[float] = []
    started: list[float] = []
    for _ in range(tries):
        before = await get_json(client, f"{API}/{service_id}")
        target = int(before["resource_metadata"]["target_instance_number"])
        log.skip_to_end()
        began = time.time()
        response = await client.put(
            f"{API}/{service_id}",
            json={"resource_metadata": {"target_instance_number": target + 1}},
        )
        response.raise_for_status()
        answered.append((time.time() - began) * 1000)
        started.append((await log.wait("replica.started", service_id, 10) - began) * 1000)
        response = await client.put(
            f"{API}/{service_id}", json={"resource_metadata": {"target_instance_number": target}}
        )
        response.raise_for_status()
        await log.wait("replica.stopped", service_id, 30)
        await asyncio.sleep(0.5)  # let the stop's pass settle
    return answered, started


async def replica_count(client: httpx.AsyncClient, service_id: str) -> int:
    answer = await get_json(client, f"{API}/{service_id}")
    return len(answer["endpoint_metadata"]["replicas"])


async def get_json(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code}: {response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return answer


async def wait_replicas(
    client: httpx.AsyncClient, service_id: str, done: Callable[[int], bool], deadline_s: float
) -> None:
    """Polls the endpoint every 5 ms until ``done(number of its replicas)``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if done(await replica_count(client, service_id)):
            return
        await asyncio.sleep(0.005)
    raise RuntimeError(f"endpoint {service_id}: replicas not as expected in {deadline_s} s")


async def wait_available(client: httpx.AsyncClient, ids: list[str], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    waiting = set(ids)
    while waiting and time.monotonic() < deadline:
        for service_id in list(waiting):
            if (await get_json(client, f"{API}/{service_id}"))["status"] == "available":
                waiting.discard(service_id)
        await asyncio.sleep(0.2)
    if waiting:
        raise RuntimeError(f"{len(waiting)} running endpoints not available in {deadline_s} s")


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


async def measure_server(
    args: argparse.Namespace,
    base: str,
    token: str,
    ids: list[str],
    figures: Figures,
    pid: int,
    work: Path,
) -> None:
    running = ids[: args.running]
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        limits=limits,
        timeout=60,
    ) as client:
        say(f"waiting for the {len(running)} running endpoints to be available")
        await wait_available(client, running, deadline_s=300)
        # The load comes from wrk (C, one thread), so the clients take little of the CPU
        # the server needs; each connection is one client waiting for its answer.
        one = work / "one.txt"
        one.write_text("".join(f"{API}/{service_id}\n" for service_id in ids))
        pages = max(1, len(ids) // 100)
        paged = work / "pages.txt"
        paged.write_text(
            "".join(f"{API}?page={page}&page_size=100\n" for page in range(1, pages + 1))
        )
        script = work / "paths.lua"
        script.write_text(WRK_PATHS)
        url = f"{base}/"
        run_wrk("warm-up", url, 2, args.clients, token, script, [str(one)])
        say(f"GET one endpoint: {args.seconds} s from {args.clients} clients (wrk)")
        got = run_wrk("GET one", url, args.seconds, args.clients, token, script, [str(one)])
        figures.add("GET one endpoint p50", got.p50_ms, "ms")
        figures.add("GET one endpoint p99", got.p99_ms, "ms")
        figures.add("GET one endpoint, rate", got.rps, "requests/s")
        say(f"GET a page of 100: {args.seconds} s from {args.clients} clients (wrk)")
        listed = run_wrk("GET a page", url, args.seconds, args.clients, token, script, [str(paged)])
        figures.add("GET a page of 100 p50", listed.p50_ms, "ms")
        figures.add("GET a page of 100 p99", listed.p99_ms, "ms")
        figures.add("GET a page of 100, rate", listed.rps, "requests/s")
        if running:
            say("PUT to the runtime's action (scale up by one, 10 times)")
            log = ServerLog(work / "serve.log")
            answered, acted = await put_to_action(client, log, running[0], 10)
            figures.add("PUT answered", statistics.median(answered), "ms")
            figures.add("PUT to the runtime's action", statistics.median(acted), "ms")
            figures.add("PUT to the runtime's action, max", max(acted), "ms")
            say("stopping the running endpoints")
            for service_id in running:
                (await client.post(f"{API}/{service_id}/stop")).raise_for_status()
            for service_id in running:
                await wait_replicas(client, service_id, (0).__eq__, deadline_s=60)
    await asyncio.sleep(3)  # let the last stops and their passes settle
    pids = process_tree(pid)
    say(f"idle CPU of moorage serve over {args.idle_seconds} s, every endpoint stopped")
    cpu_before, wall_before = cpu_seconds(pids), time.monotonic()
    await asyncio.sleep(args.idle_seconds)
    used = cpu_seconds(pids) - cpu_before
    figures.add(
        "idle CPU, all stopped", 100 * used / (time.monotonic() - wall_before), "% of a core"
    )
    figures.add("RSS of moorage serve", rss_mib(pids), "MiB")


async def measure_passes(db: Database, figures: Figures, passes: int) -> None:
    """Reconcile passes in this process over the same store (the server is stopped):
    a full resync (what the periodic safety net does: every stopped endpoint's entry
    reloaded), a pass after a write, and a quiet pass."""
    runtime = FakeRuntime(serve="shared")
    reconciler = Reconciler(db, runtime, SystemClock(), PlanPolicy(), lambda _table: None)
    try:
        for _ in range(3):  # settle
            await reconciler.reconcile_once()
        steady = reconciler.idle_routes
        full, written, quiet = [], [], []
        for _ in range(passes):
            reconciler.idle_routes = IdleRoutes(refresh_s=0.0)  # reloads every entry
            full.append(await timed(reconciler.reconcile_once))
            reconciler.idle_routes = steady
            reconciler.idle_routes.changed()  # what an API write does after its commit
            written.append(await timed(reconciler.reconcile_once))
            quiet.append(await timed(reconciler.reconcile_once))
        figures.add("full resync pass", statistics.median(full), "ms")
        figures.add("pass after a write", statistics.median(written), "ms")
        figures.add("quiet pass", statistics.median(quiet), "ms")
    finally:
        await reconciler.shutdown()


async def timed(call: Callable[[], Awaitable[None]]) -> float:
    began = time.perf_counter()
    await call()
    return (time.perf_counter() - began) * 1000


# -- the run ----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--replicas", type=int, default=50_000, help="in the store's history")
    parser.add_argument("--running", type=int, default=20, help="endpoints left running")
    parser.add_argument("--per-running", type=int, default=5, help="replicas of each")
    parser.add_argument("--database", default="sqlite", help="sqlite, or a PostgreSQL URL")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10, help="of each wrk load")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    args.running = min(args.running, args.endpoints)

    work = Path(tempfile.mkdtemp(prefix="moorage-scale-"))
    home = work / "home"
    (work / "flavors.toml").write_text(FLAVORS)
    token = "mrg_" + secrets.token_hex(24)
    port = free_port()
    env = {
        "MOORAGE_HOME": str(home),
        "MOORAGE_PORT": str(port),
        "MOORAGE_RUNTIME": "fake",
        "MOORAGE_ADMIN_TOKEN": token,
        "MOORAGE_FLAVORS": str(work / "flavors.toml"),
        "MOORAGE_LOG_FORMAT": "json",  # lifecycle records with their times
    }
    if args.database != "sqlite":
        env["MOORAGE_DATABASE_URL"] = args.database
    os.environ.update(env)
    processes = Processes(work)
    figures = Figures([])
    try:
        settings = Settings()
        say(f"store: {settings.resolved_database_url.split('@')[-1]}; work in {work}")
        preparer = MoorageServer(settings)
        preparer.prepare()
        preparer.db.dispose()
        db = Database(settings.resolved_database_url)
        began = time.perf_counter()
        ids = seed(db, args.endpoints, args.replicas, args.running, args.per_running)
        figures.add("seeding the store", time.perf_counter() - began, "s")
        say(f"starting moorage serve on 127.0.0.1:{port} (fake runtime)")
        began = time.perf_counter()
        server = processes.start("serve", [str(moorage_executable()), "serve"])
        wait_http(
            f"http://127.0.0.1:{port}/v1/inference-service/flavor",
            server,
            headers={"Authorization": f"Bearer {token}"},
            timeout=300,
        )
        figures.add("start of moorage serve", time.perf_counter() - began, "s")
        asyncio.run(
            measure_server(args, f"http://127.0.0.1:{port}", token, ids, figures, server.pid, work)
        )
        processes.check_alive("serve", server)
        processes.stop(server)
        say(f"timing {args.passes} full resync passes and quiet passes in this process")
        asyncio.run(measure_passes(db, figures, args.passes))
        db.dispose()
    finally:
        processes.clean_up(work, args.keep)
    store = "SQLite" if args.database == "sqlite" else "PostgreSQL"
    print(
        f"\n{args.endpoints:,} endpoints ({args.running} running with {args.per_running} "
        f"replicas each, then stopped) and {args.replicas:,} replicas in the store's history; "
        f"{store}; {os.cpu_count()} CPUs; {args.clients} clients\n"
    )
    print(figures.table())


if __name__ == "__main__":
    main()
