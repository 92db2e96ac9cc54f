"""Throughput and added latency of the moorage gateway against nginx and HAProxy.

One fast backend (nginx, one worker, a fixed 13-byte body) runs as a moorage
replica; the same backend is then loaded with wrk directly, through nginx as a
reverse proxy (one worker, keep-alive upstream), through HAProxy (one thread),
through the moorage gateway on the `moorage serve` port, and through a
standalone `moorage gateway` (one worker, fed by that server), all at the same
concurrency, in one run. Prints requests/s and p50/p99 latency, each as a ratio
to direct and to nginx; then the latency each path adds at half of nginx's
requests/s (wrk paced by a per-connection delay), where queueing does not hide it.

    .venv/bin/python bench/gateway_throughput.py [--seconds 10] [--connections 50]

Needs nginx, haproxy and wrk (apt-get install nginx-light haproxy wrk).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backends import WrkResult, run_wrk

BACKEND_CONF = """
worker_processes 1;
pid {dir}/backend.pid;
error_log {dir}/backend-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:__PORT__;
        location / {{ return 200 "hello, world\\n"; }}
    }}
}}
"""

NGINX_PROXY_CONF = """
worker_processes 1;
pid {dir}/proxy.pid;
error_log {dir}/proxy-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    upstream backend {{ server {backend}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
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
    timeout client 60s
    timeout server 60s
    option http-keep-alive
frontend bench
    bind 127.0.0.1:{port}
    default_backend replica
backend replica
    http-reuse always
    server r1 {backend}
"""


DELAY_MS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    for tool in ("nginx", "haproxy", "wrk"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is missing: apt-get install nginx-light haproxy wrk")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"

    work = Path(tempfile.mkdtemp(prefix="moorage-bench-"))
    (work / "backend.conf.template").write_text(BACKEND_CONF.format(dir=work))
    processes: list[subprocess.Popen[bytes]] = []
    port = free_port()
    token = "mrg_bench_admin_token"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")},
        "MOORAGE_HOME": str(work / "home"),
        "MOORAGE_PORT": str(port),
        "MOORAGE_ADMIN_TOKEN": token,
        "MOORAGE_RUNTIME": "process",
    }
    try:
        moorage = Path(sys.executable).with_name("moorage")
        processes.append(
            subprocess.Popen(
                [str(moorage), "serve"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        wait_http(base + "/healthz")
        flavor = requests.get(base + "/v1/inference-service/flavor", headers=headers, timeout=10)
        command = (
            f"sed s/__PORT__/$PORT/ {work}/backend.conf.template > nginx.conf && "
            f"exec {nginx} -c $PWD/nginx.conf -g 'daemon off;'"
        )
        created = requests.post(
            base + "/v1/inference-service",
            headers=headers,
            timeout=10,
            json={
                "name": "bench-backend",
                "resource_metadata": {"flavor_id": flavor.json()["flavor_list"][0]["flavor_id"]},
                "deploy_metadata": {"image_url": "nginx", "command": command, "port": 80},
            },
        ).json()
        service_id = created["service_id"]
        deadline = time.monotonic() + 60
        while True:
            endpoint = requests.get(
                f"{base}/v1/inference-service/{service_id}", headers=headers, timeout=10
            ).json()
            if endpoint["status"] == "available":
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the backend endpoint did not become available: {endpoint}")
            time.sleep(0.5)
        backend = endpoint["endpoint_metadata"]["replicas"][0]["address"]

        nginx_port, haproxy_port = free_port(), free_port()
        (work / "proxy.conf").write_text(
            NGINX_PROXY_CONF.format(dir=work, backend=backend, port=nginx_port)
        )
        (work / "haproxy.cfg").write_text(HAPROXY_CONF.format(backend=backend, port=haproxy_port))
        processes.append(
            subprocess.Popen([nginx, "-c", str(work / "proxy.conf"), "-g", "daemon off;"])
        )
        processes.append(subprocess.Popen([haproxy, "-f", str(work / "haproxy.cfg")]))
        standalone_port = free_port()
        processes.append(
            subprocess.Popen(
                [
                    *(str(moorage), "gateway", "--control-plane", base),
                    *("--token", token, "--port", str(standalone_port)),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        path = f"/inference-api/v1/inference_service/{service_id}/"
        gateway = base + path
        standalone = f"http://127.0.0.1:{standalone_port}{path}"
        wait_http(f"http://127.0.0.1:{nginx_port}/")
        wait_http(f"http://127.0.0.1:{haproxy_port}/")
        wait_http(gateway, headers)
        wait_http(standalone, headers)

        targets = [
            ("direct", f"http://{backend}/", None),
            ("nginx (1 worker)", f"http://127.0.0.1:{nginx_port}/", None),
            ("HAProxy (1 thread)", f"http://127.0.0.1:{haproxy_port}/", None),
            ("moorage serve (1 process)", gateway, token),
            ("moorage gateway (1 worker)", standalone, token),
        ]
        for _, url, auth in targets:  # warm up connection pools
            run_wrk("warm-up", url, 2, args.connections, auth)
        results = [run_wrk(n, u, args.seconds, args.connections, a) for n, u, a in targets]
        # Half of nginx's rate: each connection waits DELAY_MS after every response.
        half_rate = results[1].rps / 2
        paced_connections = max(1, round(half_rate * (DELAY_MS + 0.2) / 1000))
        script = work / "pace.lua"
        script.write_text(f"function delay()\n  return {DELAY_MS}\nend\n")
        paced = [run_wrk(n, u, args.seconds, paced_connections, a, script) for n, u, a in targets]
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGINT if process is processes[0] else signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nwrk -t1 -c{args.connections} -d{args.seconds}s, fixed 13-byte body, one run\n")
    print_table(results)
    print(
        f"\nAt half of nginx's rate: wrk -t1 -c{paced_connections} -d{args.seconds}s, "
        f"each connection pausing {DELAY_MS} ms between requests (about "
        f"{half_rate:.0f} req/s asked)\n"
    )
    print_table(paced)


def print_table(results: list[WrkResult]) -> None:
    direct, via_nginx = results[0], results[1]
    print(
        f"{'path':28} {'req/s':>10} {'vs direct':>10} {'vs nginx':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'+p99 vs direct':>15}"
    )
    for r in results:
        print(
            f"{r.name:28} {r.rps:>10.0f} {r.rps / direct.rps:>10.2f} {r.rps / via_nginx.rps:>9.2f} "
            f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.p99_ms - direct.p99_ms:>15.2f}"
        )


if __name__ == "__main__":
    main()
