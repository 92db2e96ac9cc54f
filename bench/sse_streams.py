"""Many long-lived SSE streams through the moorage gateway: correctness and memory per stream.

Streaming completions keep a connection open for as long as a model generates;
a gateway that buffers, reorders, drops the end of a stream, or costs tens of
KiB per open stream fails there long before it fails a requests/s test. One
process serves `GET /stream?events=N&interval=S` (bench/backends.py); N clients
hold streams open at once through `moorage gateway` (one endpoint, that
process its only replica), and every stream must deliver ids 0..N-1 in order
and then end cleanly. The proxy's resident memory (with its child processes) is
sampled every second: before the streams, at the peak, and after they close.
nginx (1 worker, proxy_buffering off) carries the same streams for comparison.

    .venv/bin/python bench/sse_streams.py [--streams 2000] [--seconds 60] [--interval 1.0]
        [--only moorage,nginx] [--workers 1]

"max lag" is how late event i arrived against the moment its request was sent
plus i * interval (the replica sends event 0 at once): a proxy that is slow to
accept, queues streams, or buffers events shows there even when nothing is lost.
Needs nginx for its row (apt-get install nginx-light).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import backends

SERVICE_ID = "bench"
TOKEN = "bench-token"
PREFIX = f"/inference-api/v1/inference_service/{SERVICE_ID}"
PATHS = ("moorage-gateway", "nginx")

NGINX_CONF = """
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {dir}/nginx-body;
    proxy_temp_path {dir}/nginx-proxy;
    keepalive_requests 1000000;
    upstream sse {{ server 127.0.0.1:{backend}; keepalive 1024; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /healthz {{ return 200 "ok\\n"; }}
        location {prefix}/ {{
            proxy_pass http://sse/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


@dataclass
class Result:
    path: str
    streams: int
    events_expected: int
    events_received: int = 0
    out_of_order_or_missing: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    open_now: int = 0
    peak_open: int = 0
    max_lag_ms: float = 0.0
    base_kib: int = 0
    peak_kib: int = 0
    after_kib: int = 0
    failure: str | None = None

    @property
    def kib_per_stream(self) -> float:
        return (self.peak_kib - self.base_kib) / self.streams


async def one_stream(
    session: aiohttp.ClientSession, url: str, events: int, interval: float, result: Result
) -> None:
    """Reads one stream to its end; every event that is not the next id counts as bad."""
    loop = asyncio.get_running_loop()
    in_order = 0
    expected = 0
    began = loop.time()
    opened = False
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            if response.status != 200:
                body = (await response.read())[:120].decode(errors="replace")
                result.failed[f"HTTP {response.status}: {body}"] += 1
                return
            result.open_now += 1
            opened = True
            result.peak_open = max(result.peak_open, result.open_now)
            fields: dict[bytes, bytes] = {}
            async for raw in response.content:
                line = raw.rstrip(b"\r\n")
                if line:
                    name, _, value = line.partition(b":")
                    fields[name] = value.removeprefix(b" ")
                    continue
                if not fields:
                    continue
                now = loop.time()
                result.events_received += 1
                try:
                    event_id = int(fields.get(b"id", b"-1"))
                except ValueError:
                    event_id = -1
                if event_id == expected and fields.get(b"data") == str(event_id).encode():
                    in_order += 1
                    lag = now - (began + event_id * interval)
                    result.max_lag_ms = max(result.max_lag_ms, lag * 1000)
                if event_id >= 0:
                    expected = event_id + 1
                fields = {}
    except TimeoutError:
        result.failed["client timeout (no data for too long)"] += 1
    except aiohttp.ClientError as exc:
        result.failed[f"{type(exc).__name__}: {exc}"[:160]] += 1
    finally:
        if opened:
            result.open_now -= 1
        result.out_of_order_or_missing += events - in_order


async def sample_rss(pid: int, result: Result, stop: asyncio.Event) -> None:
    while not stop.is_set():
        result.peak_kib = max(result.peak_kib, backends.rss_kib(backends.process_tree(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def run_streams(
    url: str, pid: int, args: argparse.Namespace, events: int, result: Result
) -> None:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=60, sock_read=max(30.0, 10 * args.interval)
    )
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # One short stream first: a path that cannot stream at all fails here, clearly.
        probe = Result(result.path, 1, 3)
        await one_stream(session, f"{url}?events=3&interval=0.05", 3, 0.05, probe)
        if probe.failed or probe.out_of_order_or_missing:
            detail = ", ".join(probe.failed) or f"{probe.events_received} of 3 events in order"
            raise RuntimeError(f"a 3-event probe stream failed: {detail}")
        await asyncio.sleep(1.0)
        result.base_kib = backends.rss_kib(backends.process_tree(pid))
        result.peak_kib = result.base_kib
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(pid, result, stop))
        stream_url = f"{url}?events={events}&interval={args.interval}"
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for i in range(args.streams):  # spread over --ramp so the accept queue keeps up
            delay = start + i * args.ramp / args.streams - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(
                asyncio.create_task(one_stream(session, stream_url, events, args.interval, result))
            )
        await asyncio.gather(*tasks)
        stop.set()
        await sampler
    await asyncio.sleep(2.0)
    result.after_kib = backends.rss_kib(backends.process_tree(pid))


def start_path(
    name: str,
    processes: backends.Processes,
    work: Path,
    backend_port: int,
    args: argparse.Namespace,
) -> tuple[str, int]:
    """Starts one proxy; returns the stream URL and the pid whose tree holds its memory."""
    port = backends.free_port()
    if name == "nginx":
        conf = work / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                nofile=backends.nofile_limit(),
                dir=work,
                connections=max(4096, 4 * args.streams + 1024),
                backend=backend_port,
                port=port,
                prefix=PREFIX,
            )
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        process = processes.start(name, [nginx, "-c", str(conf), "-g", "daemon off;"])
    else:
        missing = backends.moorage_gateway_missing()
        if missing:
            raise RuntimeError(f"moorage gateway unavailable: {missing}")
        routes = work / "routes.json"
        endpoint = {
            "service_id": SERVICE_ID,
            "tokens": [TOKEN],
            "replicas": [f"127.0.0.1:{backend_port}"],
            # Room for every stream at once: this measures streaming, not admission.
            "gateway_metadata": {
                "max_concurrency": args.streams + 100,
                "max_queue": 100000,
                "queue_timeout_s": 600,
            },
        }
        routes.write_text(json.dumps({"endpoints": [endpoint]}, indent=2))
        command = [str(backends.moorage_executable()), "gateway", "--routes", str(routes)]
        command += ["--port", str(port), "--host", "127.0.0.1", "--workers", str(args.workers)]
        # Every stream comes from this one address: allow them all, as nginx's config does.
        allowed = str(args.streams + 1024)
        command += ["--max-connections", allowed, "--max-connections-per-client", allowed]
        process = processes.start(name, command)
    backends.wait_http(f"http://127.0.0.1:{port}/healthz", process)
    return f"http://127.0.0.1:{port}{PREFIX}/stream", process.pid


def print_table(results: list[Result], args: argparse.Namespace, events: int) -> None:
    print(
        f"\n{args.streams} streams x {events} events every {args.interval:g} s, opened over "
        f"{args.ramp:g} s; RSS of the proxy and its children\n"
    )
    header = (
        f"{'path':16} {'streams':>7} {'peak open':>9} {'events exp':>10} {'events recv':>11} "
        f"{'bad':>6} {'failed':>6} {'base MiB':>8} {'peak MiB':>8} {'KiB/stream':>10} "
        f"{'after MiB':>9} {'max lag ms':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        if r.failure:
            print(f"{r.path:16} FAILED: {r.failure.splitlines()[0]}")
            continue
        print(
            f"{r.path:16} {r.streams:>7} {r.peak_open:>9} {r.events_expected:>10} "
            f"{r.events_received:>11} {r.out_of_order_or_missing:>6} {sum(r.failed.values()):>6} "
            f"{r.base_kib / 1024:>8.1f} {r.peak_kib / 1024:>8.1f} {r.kib_per_stream:>10.1f} "
            f"{r.after_kib / 1024:>9.1f} {r.max_lag_ms:>10.0f}"
        )
    print(
        "\nbad: events expected but not received in order (missing, out of order, or wrong "
        "data); failed: streams that did not end cleanly.\nRSS is VmRSS summed over the "
        "process tree: with --workers > 1, pages a worker shares with its parent count twice."
    )
    for r in results:
        if r.failure:
            print(f"\n{r.path} failed:\n{r.failure}")
        for error, count in r.failed.most_common():
            print(f"{r.path}: {count} x {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60, help="how long each stream lasts")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between events")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds to open all streams")
    parser.add_argument("--workers", type=int, default=1, help="moorage gateway --workers")
    parser.add_argument("--only", help=f"comma-separated prefixes of: {', '.join(PATHS)}")
    parser.add_argument("--keep", action="store_true", help="keep configs and logs")
    args = parser.parse_args()
    paths = backends.select(PATHS, args.only)
    if "nginx" in paths and not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        raise SystemExit("nginx is missing: apt-get install nginx-light (or --only moorage)")
    backends.raise_nofile()
    needed = 3 * args.streams + 200  # the gateway holds two descriptors per stream
    if backends.nofile_limit() < needed:
        raise SystemExit(
            f"RLIMIT_NOFILE is {backends.nofile_limit()}, {args.streams} streams need "
            f"about {needed}: raise the hard limit (ulimit -Hn) or use fewer --streams"
        )
    events = max(1, round(args.seconds / args.interval))

    work = Path(tempfile.mkdtemp(prefix="moorage-bench-sse-"))
    processes = backends.Processes(work)
    results: list[Result] = []
    try:
        backend_port = backends.free_port()
        backend = processes.start(
            "sse-backend",
            [
                sys.executable,
                str(Path(__file__).resolve().with_name("backends.py")),
                "sse",
                "--port",
                str(backend_port),
            ],
        )
        try:
            backends.wait_tcp(backend_port, backend)
        except RuntimeError as exc:
            raise SystemExit(f"sse-backend: {exc}\n{processes.log_tail('sse-backend')}") from None
        for name in paths:
            result = Result(name, args.streams, args.streams * events)
            results.append(result)
            try:
                url, pid = start_path(name, processes, work, backend_port, args)
                print(f"{name}: {args.streams} streams ...", file=sys.stderr)
                began = time.monotonic()
                backends.run_loop(run_streams(url, pid, args, events, result))
                print(f"  done in {time.monotonic() - began:.1f} s", file=sys.stderr)
                processes.check_alive("sse-backend", backend)
            except RuntimeError as exc:
                result.failure = f"{exc}\n--- {name} log ---\n{processes.log_tail(name)}"
                print(f"{name}: {str(exc).splitlines()[0]}", file=sys.stderr)
            finally:
                for running_name, process in list(processes.running):
                    if running_name == name:
                        processes.stop(process)
    finally:
        processes.clean_up(work, args.keep)
    print_table(results, args, events)


if __name__ == "__main__":
    main()
