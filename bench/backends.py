"""Stand-in replicas for the gateway benchmarks, and the plumbing to run them.

A real model server answers slowly, a few requests at a time, and queues the
rest; a proxy's balancing policy only matters against a backend like that, so
`inference` mimics one: each port is one replica with 2 slots, FIFO queueing,
and lognormal service times (median 80 ms, sigma 1: a long tail, like mixed
prompt lengths). `sse` answers long-lived event streams, so a proxy's cost per
open stream can be measured without a model behind it. Both are raw asyncio
HTTP/1.1 (uvloop when installed) so that the stand-in is never what limits a run.

    .venv/bin/python bench/backends.py inference --ports 9001,9002 [--seed 1]
    .venv/bin/python bench/backends.py sse --port 9100

The benchmarks import the helpers below (ports, readiness, process lifetime,
RSS) so that each of them stays one command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MEDIAN_S = 0.080
SIGMA = 1.0
SLOTS = 2
# A load generator that already drew the service time sends it here, so every proxy
# under test sees the same jobs, not only the same arrival times.
SERVICE_HEADER = "x-service-time-ms"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 501: "Not Implemented"}


def mean_service_s(median_s: float = MEDIAN_S, sigma: float = SIGMA) -> float:
    return median_s * math.exp(sigma * sigma / 2)


def draw_service_s(rng: random.Random, median_s: float = MEDIAN_S, sigma: float = SIGMA) -> float:
    return rng.lognormvariate(math.log(median_s), sigma)


# --------------------------------------------------------------------------- HTTP/1.1


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


class BadRequest(Exception):
    pass


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """Proxies may re-frame a request body as chunks, so they are read too."""
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on a connection, or None once the peer has closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise BadRequest(f"bad request line {lines[0]!r}") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    return Request(method, target, version, headers, body)


def response_head(status: int, headers: Sequence[tuple[str, str]], keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def json_response(status: int, payload: object, keep_alive: bool) -> bytes:
    body = json.dumps(payload).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    return response_head(status, headers, keep_alive) + body


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


def connection_handler(handle: Handler) -> Callable[..., Awaitable[None]]:
    """Keep-alive loop around ``handle``; requests on one connection are answered in
    order, which is all HTTP/1.1 pipelining asks for."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    request = await read_request(reader)
                except (BadRequest, ValueError) as exc:
                    writer.write(json_response(400, {"error": str(exc)}, keep_alive=False))
                    await writer.drain()
                    return
                if request is None:
                    return
                await handle(request, writer)
                if not request.keep_alive:
                    await writer.drain()
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return serve


# --------------------------------------------------------------------------- inference


class Replica:
    """One model server: ``slots`` requests served at once, the rest wait in FIFO
    order (asyncio.Semaphore wakes waiters in arrival order)."""

    def __init__(
        self, port: int, slots: int, rng: random.Random, median_s: float, sigma: float
    ) -> None:
        self.port = port
        self.slots = asyncio.Semaphore(slots)
        self.rng = rng
        self.median_s = median_s
        self.sigma = sigma
        self.served = 0

    async def handle(self, request: Request, writer: asyncio.StreamWriter) -> None:
        if urlsplit(request.target).path == "/healthz":  # readiness checks take no slot
            writer.write(json_response(200, {"status": "ok"}, request.keep_alive))
            return
        given = request.headers.get(SERVICE_HEADER)
        if given is not None:
            service_s = float(given) / 1000
        else:
            service_s = draw_service_s(self.rng, self.median_s, self.sigma)
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        async with self.slots:
            started = loop.time()
            await asyncio.sleep(service_s)
        self.served += 1
        payload = {
            "replica": self.port,
            "queued_ms": round((started - arrived) * 1000, 3),
            "service_ms": round(service_s * 1000, 3),
            "service_given": given is not None,
            "request_bytes": len(request.body),
        }
        writer.write(json_response(200, payload, request.keep_alive))


async def serve_inference(
    host: str, ports: Sequence[int], slots: int, seed: int | None, median_s: float, sigma: float
) -> None:
    servers = []
    for index, port in enumerate(ports):
        rng = random.Random(None if seed is None else f"{seed}-{index}")
        replica = Replica(port, slots, rng, median_s, sigma)
        servers.append(
            await asyncio.start_server(
                connection_handler(replica.handle), host, port, backlog=4096, reuse_address=True
            )
        )
    print(f"inference replicas on {host}:{','.join(map(str, ports))}", file=sys.stderr)
    await _serve_until_signalled(servers)


# --------------------------------------------------------------------------- SSE


async def _sse(request: Request, writer: asyncio.StreamWriter) -> None:
    url = urlsplit(request.target)
    if url.path == "/healthz":
        writer.write(json_response(200, {"status": "ok"}, request.keep_alive))
        return
    if url.path != "/stream":
        writer.write(json_response(404, {"error": "try /stream"}, request.keep_alive))
        return
    query = parse_qs(url.query)
    events = int(query.get("events", ["10"])[0])
    interval = float(query.get("interval", ["1.0"])[0])
    headers = [
        ("Content-Type", "text/event-stream"),
        ("Cache-Control", "no-cache"),
        ("Transfer-Encoding", "chunked"),
    ]
    writer.write(response_head(200, headers, request.keep_alive))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(events):
        # Scheduled from the start, so a slow write does not push later events back.
        delay = start + i * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        event = f"id: {i}\ndata: {i}\n\n".encode()
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def serve_sse(host: str, port: int) -> None:
    server = await asyncio.start_server(
        connection_handler(_sse), host, port, backlog=4096, reuse_address=True
    )
    print(f"SSE streams on {host}:{port}/stream?events=N&interval=S", file=sys.stderr)
    await _serve_until_signalled([server])


async def _serve_until_signalled(servers: Iterable[asyncio.Server]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def run_loop(main: Coroutine[object, object, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


# --------------------------------------------------------------------------- harness


def raise_nofile() -> None:
    """Thousands of streams need thousands of descriptors; the soft limit is often 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def nofile_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """Distinct ports: sockets stay bound until all are chosen."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class Processes:
    """Everything a benchmark starts, each with its log, stopped in reverse order."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, command: Sequence[str]) -> subprocess.Popen[bytes]:
        log = (self.work / f"{name}.log").open("wb")
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=raise_nofile,
            cwd=self.work,
        )
        log.close()
        self.running.append((name, process))
        return process

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.work / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self, name: str, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running = [(n, p) for n, p in self.running if p is not process]

    def stop_all(self) -> None:
        for _, process in reversed(self.running):
            self.stop(process)

    def clean_up(self, work: Path, keep: bool) -> None:
        """Stops everything; removes the work directory unless asked to keep it."""
        self.stop_all()
        if keep:
            print(f"configs and logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def wait_tcp(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s")


def wait_http(
    url: str,
    process: subprocess.Popen[bytes],
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> None:
    """Until ``url`` answers 200; an error status is reported at the end, not hidden."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers or {}), timeout=5
            ) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:300]!r}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s (last: {last})")


def moorage_executable() -> Path:
    return Path(sys.executable).with_name("moorage")


@dataclass
class Server:
    """A running ``moorage serve``: its URL, the admin's and a user's tokens, its home."""

    url: str
    admin: str
    user: str
    home: Path


@contextlib.contextmanager
def moorage_serve(prefix: str, **settings: str) -> Iterator[Server]:
    """``moorage serve`` on the process runtime with a fresh home (``MOORAGE_*``
    ``settings`` added), an admin token and a user "bench"; stopped, and its home
    removed, on exit. Its log's last lines are printed when the body fails."""
    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    port = free_port()
    admin = "mrg_" + secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
    env.update(
        MOORAGE_HOME=str(home),
        MOORAGE_PORT=str(port),
        MOORAGE_RUNTIME="process",
        MOORAGE_ADMIN_TOKEN=admin,
        **settings,
    )
    moorage = str(moorage_executable())
    log = (home / "serve.log").open("wb")
    server = subprocess.Popen([moorage, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", server)
        user = subprocess.run(
            [moorage, "tokens", "create", "--user", "bench"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        yield Server(f"http://127.0.0.1:{port}", admin, user, home)
    except BaseException:
        tail = (home / "serve.log").read_text(errors="replace").splitlines()[-30:]
        print("moorage serve's log, last lines:\n" + "\n".join(tail), file=sys.stderr)
        raise
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def moorage_gateway_missing() -> str | None:
    """Why ``moorage gateway`` cannot run here, or None when it can."""
    executable = moorage_executable()
    if not executable.exists():
        return f"{executable} does not exist"
    result = subprocess.run(
        [str(executable), "gateway", "--help"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        lines = [line.strip(" │╭╮╰╯─") for line in (result.stderr or result.stdout).splitlines()]
        said = [line for line in lines if line and not line.startswith(("Usage:", "Try ", "Error"))]
        detail = f": {said[-1]}" if said else ""
        return f"`moorage gateway --help` exited with {result.returncode}{detail}"
    return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (nginx's workers, a gateway's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_kib(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest rank on sorted values; nan when there are none."""
    if not ordered:
        return math.nan
    index = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[min(index, len(ordered) - 1)]


def select(names: Sequence[str], only: str | None) -> list[str]:
    """``--only nginx,haproxy`` keeps every name starting with one of the prefixes."""
    if not only:
        return list(names)
    prefixes = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [n for n in names if any(n.startswith(p) for p in prefixes)]
    if not chosen:
        raise SystemExit(f"--only {only!r} matches none of {', '.join(names)}")
    return chosen


# --------------------------------------------------------------------------- CLI


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        raise ValueError(f"cannot read wrk's latency {value!r}")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(
    name: str,
    url: str,
    seconds: int,
    connections: int,
    token: str | None,
    script: Path | None = None,
    script_args: Sequence[str] = (),
) -> WrkResult:
    """One wrk run (one thread, ``connections`` connections, latencies recorded);
    a run with any non-2xx answer stops the benchmark."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    if token:
        command[1:1] = ["-H", f"Authorization: Bearer {token}"]
    if script_args:
        command += ["--", *script_args]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Latency Distribution" not in output:
        raise SystemExit(f"{name}: wrk printed no latencies:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise SystemExit(f"{name}: {errors.group(1)} failed responses\n{output}")
    return WrkResult(name, rps, p50, p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    kinds = parser.add_subparsers(dest="kind", required=True)
    inference = kinds.add_parser("inference", help="replicas with 2 slots and lognormal times")
    inference.add_argument("--ports", required=True, help="comma-separated, one per replica")
    inference.add_argument("--host", default="127.0.0.1")
    inference.add_argument("--slots", type=int, default=SLOTS)
    inference.add_argument("--median-ms", type=float, default=MEDIAN_S * 1000)
    inference.add_argument("--sigma", type=float, default=SIGMA)
    inference.add_argument("--seed", type=int, default=None)
    sse = kinds.add_parser("sse", help="GET /stream?events=N&interval=S")
    sse.add_argument("--port", type=int, required=True)
    sse.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    raise_nofile()
    if args.kind == "inference":
        ports = [int(p) for p in args.ports.split(",") if p]
        run_loop(
            serve_inference(
                args.host, ports, args.slots, args.seed, args.median_ms / 1000, args.sigma
            )
        )
    else:
        run_loop(serve_sse(args.host, args.port))


if __name__ == "__main__":
    main()
