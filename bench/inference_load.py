"""Latency under inference-shaped load: nginx, HAProxy and the moorage gateway's policies.

A throughput benchmark with an instant backend says little about balancing; what
matters for model servers is where requests wait. Here 4 replicas each serve 2
requests at a time with lognormal service times (median 80 ms, sigma 1, mean
~132 ms), so capacity is 8 / 0.1319 ~ 60.7 req/s. Requests arrive open-loop
(Poisson, at fractions of capacity, sent on time whatever is still outstanding),
so a policy that sends work to a busy replica shows up in the tail. Every target
sees the same arrival times and the same service times: both are drawn from
--seed, and each request carries its service time in a header the replica obeys.

Targets, each at each load, interleaved so that a noisy machine hurts all alike:
nginx round-robin and least_conn (1 worker, keep-alive upstream: requests queue
at the replicas), HAProxy leastconn with maxconn 2 per server (requests queue
centrally), and `moorage gateway` with each policy, max_concurrency 2 and a big
queue (central queue too).

    .venv/bin/python bench/inference_load.py [--seconds 30] [--loads 0.7,0.85] [--seed 1]
        [--only nginx,haproxy,moorage]

Latency is measured from each request's scheduled arrival, so a late send is not
hidden; the worst send lag is printed so a slow load generator would be seen.
Needs nginx and haproxy (apt-get install nginx-light haproxy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import backends

SERVICE_ID = "bench"
TOKEN = "bench-token"
PATH = f"/inference-api/v1/inference_service/{SERVICE_ID}/v1/completions"
REPLICAS = 4
BODY = json.dumps({"model": "bench", "prompt": "Say hello.", "max_tokens": 16}).encode()

NGINX_CONF = """
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {dir}/{name}-body;
    proxy_temp_path {dir}/{name}-proxy;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    upstream replicas {{
        {balance}
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }}
    }}
}}
"""

HAPROXY_CONF = """
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout queue 600s
    option http-keep-alive
frontend bench
    bind 127.0.0.1:{port}
    maxconn 4096
    default_backend replicas
backend replicas
    balance leastconn
    http-reuse safe
{servers}
"""

TARGETS = (
    "nginx-roundrobin",
    "nginx-leastconn",
    "haproxy-leastconn",
    "moorage-round_robin",
    "moorage-least_outstanding",
    "moorage-power_of_two",
)


@dataclass
class Row:
    target: str
    load: float
    latencies_ms: list[float] = field(default_factory=list)
    replica_queue_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    warmup_requests: int = 0
    warmup_errors: Counter[str] = field(default_factory=Counter)
    worst_send_lag_ms: float = 0.0
    service_not_given: int = 0
    per_replica: Counter[int] = field(default_factory=Counter)
    failure: str | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + sum(self.errors.values())


@dataclass(frozen=True)
class Arrival:
    at_s: float
    service_s: float
    warmup: bool


def arrivals(rate: float, seconds: float, warmup_s: float, seed: int, load: float) -> list[Arrival]:
    """Poisson arrivals and their service times; the same for every target at a load."""
    times = random.Random(f"arrivals-{seed}-{load}")
    sizes = random.Random(f"service-{seed}-{load}")
    result, now = [], 0.0
    while True:
        now += times.expovariate(rate)
        if now >= warmup_s + seconds:
            return result
        result.append(Arrival(now, backends.draw_service_s(sizes), now < warmup_s))


async def _one(
    session: aiohttp.ClientSession, url: str, arrival: Arrival, scheduled: float, row: Row
) -> None:
    loop = asyncio.get_running_loop()
    row.worst_send_lag_ms = max(row.worst_send_lag_ms, (loop.time() - scheduled) * 1000)
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/json",
        backends.SERVICE_HEADER: f"{arrival.service_s * 1000:.3f}",
    }
    error = None
    payload: dict[str, Any] = {}
    try:
        async with session.post(url, data=BODY, headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                error = f"HTTP {response.status}: {body[:120].decode(errors='replace')}"
            else:
                payload = json.loads(body)
    except TimeoutError:
        error = "client timeout"
    except (aiohttp.ClientError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:160]
    latency_ms = (loop.time() - scheduled) * 1000
    if arrival.warmup:
        row.warmup_requests += 1
        if error:
            row.warmup_errors[error] += 1
        return
    if error:
        row.errors[error] += 1
        return
    row.latencies_ms.append(latency_ms)
    row.replica_queue_ms.append(float(payload.get("queued_ms", 0.0)))
    row.per_replica[int(payload.get("replica", 0))] += 1
    if not payload.get("service_given"):
        row.service_not_given += 1


async def offer_load(url: str, plan: list[Arrival], row: Row, timeout_s: float) -> None:
    """Sends each request at its arrival time, never waiting for earlier ones."""
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=600)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.1
        tasks = []
        for arrival in plan:
            scheduled = start + arrival.at_s
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(session, url, arrival, scheduled, row)))
        await asyncio.gather(*tasks)


def start_target(
    name: str, processes: backends.Processes, work: Path, replica_ports: list[int]
) -> tuple[str, subprocess.Popen[bytes]]:
    """Starts one proxy and returns the URL to load once it answers."""
    port = backends.free_port()
    if name.startswith("nginx"):
        balance = "least_conn;" if name == "nginx-leastconn" else ""
        servers = "\n".join(f"        server 127.0.0.1:{p};" for p in replica_ports)
        conf = work / f"{name}.conf"
        conf.write_text(
            NGINX_CONF.format(
                nofile=backends.nofile_limit(),
                dir=work,
                name=name,
                balance=balance,
                servers=servers,
                port=port,
            )
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        process = processes.start(name, [nginx, "-c", str(conf), "-g", "daemon off;"])
    elif name.startswith("haproxy"):
        servers = "\n".join(
            f"    server r{i} 127.0.0.1:{p} maxconn {backends.SLOTS}"
            for i, p in enumerate(replica_ports)
        )
        conf = work / f"{name}.cfg"
        conf.write_text(HAPROXY_CONF.format(port=port, servers=servers))
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        process = processes.start(name, [haproxy, "-f", str(conf)])
    else:
        missing = backends.moorage_gateway_missing()
        if missing:
            raise RuntimeError(f"moorage gateway unavailable: {missing}")
        policy = name.removeprefix("moorage-")
        routes = work / f"{name}-routes.json"
        endpoint = {
            "service_id": SERVICE_ID,
            "tokens": [TOKEN],
            "replicas": [f"127.0.0.1:{p}" for p in replica_ports],
            "gateway_metadata": {
                "policy": policy,
                "max_concurrency": backends.SLOTS,
                "max_queue": 100000,
                "queue_timeout_s": 600,
            },
        }
        routes.write_text(json.dumps({"endpoints": [endpoint]}, indent=2))
        command = [str(backends.moorage_executable()), "gateway", "--routes", str(routes)]
        command += ["--port", str(port), "--host", "127.0.0.1", "--workers", "1"]
        process = processes.start(name, command)
    try:
        # nginx and HAProxy pass /healthz to a replica; the gateway answers it itself.
        backends.wait_http(f"http://127.0.0.1:{port}/healthz", process)
        # One real request through the proxy: a gateway that is up but cannot reach
        # its replicas should fail here, not as a column of errors.
        backends.wait_http(
            f"http://127.0.0.1:{port}{PATH}",
            process,
            {"Authorization": f"Bearer {TOKEN}", backends.SERVICE_HEADER: "1"},
            timeout=10,
        )
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n--- {name} log ---\n{processes.log_tail(name)}") from None
    return f"http://127.0.0.1:{port}{PATH}", process


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def print_table(rows: list[Row], args: argparse.Namespace, capacity: float) -> None:
    rates = ", ".join(f"{load:.2f} = {load * capacity:.1f} req/s" for load in args.loads)
    print(
        f"\n{REPLICAS} replicas x {backends.SLOTS} slots, lognormal service (median "
        f"{backends.MEDIAN_S * 1000:.0f} ms, sigma {backends.SIGMA:g}), capacity "
        f"{capacity:.1f} req/s; loads {rates}; {args.seconds:g} s measured after "
        f"{args.warmup:g} s warm-up; seed {args.seed}\n"
    )
    header = (
        f"{'target':26} {'load':>5} {'requests':>8} {'errors':>6} {'p50 ms':>7} "
        f"{'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'repl-q p99':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if row.failure:
            print(f"{row.target:26} {row.load:>5.2f} FAILED: {row.failure.splitlines()[0]}")
            continue
        ordered = sorted(row.latencies_ms)
        queued = sorted(row.replica_queue_ms)
        print(
            f"{row.target:26} {row.load:>5.2f} {row.requests:>8} {sum(row.errors.values()):>6} "
            f"{_fmt(backends.percentile(ordered, 0.50)):>7} "
            f"{_fmt(backends.percentile(ordered, 0.90)):>7} "
            f"{_fmt(backends.percentile(ordered, 0.99)):>7} "
            f"{_fmt(ordered[-1] if ordered else float('nan')):>7} "
            f"{_fmt(backends.percentile(queued, 0.99)):>10}"
        )
    print(
        "\nrepl-q p99: time spent waiting inside a replica for one of its slots "
        "(near 0 when the proxy queues centrally)."
    )
    measured = [r for r in rows if not r.failure]
    if measured:
        lag = max(r.worst_send_lag_ms for r in measured)
        warm = ", ".join(sorted({f"{r.load:.2f}: {r.warmup_requests}" for r in measured}, key=str))
        print(f"warm-up requests per row, sent but not counted: {warm}")
        print(f"load generator: worst send lag {lag:.1f} ms behind schedule (all rows)")
    for row in rows:
        label = f"{row.target} @ {row.load:.2f}"
        if row.failure:
            print(f"\n{label} failed:\n{row.failure}")
            continue
        for error, count in row.errors.most_common():
            print(f"{label}: {count} x {error}")
        for error, count in row.warmup_errors.most_common():
            print(f"{label}: {count} x {error} (during warm-up)")
        if row.service_not_given:
            print(
                f"{label}: {row.service_not_given} responses say the replica drew its own "
                f"service time ({backends.SERVICE_HEADER} did not arrive)"
            )
    spread = [
        f"{r.target} @ {r.load:.2f}: "
        + " ".join(str(r.per_replica[p]) for p in sorted(r.per_replica))
        for r in measured
    ]
    if spread:
        print("\nrequests per replica:\n  " + "\n  ".join(spread))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=3, help="seconds sent but not counted")
    parser.add_argument(
        "--loads",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=[0.7, 0.85],
        help="fractions of capacity, comma-separated",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300, help="per request, seconds")
    parser.add_argument("--only", help=f"comma-separated prefixes of: {', '.join(TARGETS)}")
    parser.add_argument("--keep", action="store_true", help="keep configs and logs")
    args = parser.parse_args()
    targets = backends.select(TARGETS, args.only)
    for tool in {t.split("-")[0] for t in targets} - {"moorage"}:
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is missing: apt-get install nginx-light haproxy")
    backends.raise_nofile()
    capacity = REPLICAS * backends.SLOTS / backends.mean_service_s()

    work = Path(tempfile.mkdtemp(prefix="moorage-bench-inference-"))
    processes = backends.Processes(work)
    rows: list[Row] = []
    try:
        replica_ports = backends.free_ports(REPLICAS)
        replicas = processes.start(
            "replicas",
            [
                sys.executable,
                str(Path(__file__).resolve().with_name("backends.py")),
                "inference",
                "--ports",
                ",".join(map(str, replica_ports)),
                "--seed",
                str(args.seed),
            ],
        )
        try:
            for port in replica_ports:
                backends.wait_tcp(port, replicas)
        except RuntimeError as exc:
            raise SystemExit(f"replicas: {exc}\n{processes.log_tail('replicas')}") from None

        urls: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
        failures: dict[str, str] = {}
        for name in targets:
            try:
                urls[name] = start_target(name, processes, work, replica_ports)
            except RuntimeError as exc:
                failures[name] = str(exc)
                print(f"{name}: {str(exc).splitlines()[0]}", file=sys.stderr)

        for load in args.loads:
            plan = arrivals(load * capacity, args.seconds, args.warmup, args.seed, load)
            for name in targets:
                row = Row(name, load)
                rows.append(row)
                if name in failures:
                    row.failure = failures[name]
                    continue
                print(
                    f"{name} @ {load:.2f}: {len(plan)} requests over "
                    f"{args.warmup + args.seconds:g} s ...",
                    file=sys.stderr,
                )
                began = time.monotonic()
                url, process = urls[name]
                backends.run_loop(offer_load(url, plan, row, args.timeout))
                print(f"  done in {time.monotonic() - began:.1f} s", file=sys.stderr)
                processes.check_alive("replicas", replicas)
                if process.poll() is not None:  # counted as errors here, FAILED from now on
                    failures[name] = (
                        f"exited with {process.returncode} during the {load:.2f} row\n"
                        f"--- {name} log ---\n{processes.log_tail(name)}"
                    )
                time.sleep(0.5)
    finally:
        processes.clean_up(work, args.keep)
    print_table(rows, args, capacity)


if __name__ == "__main__":
    main()
