"""Start-up you can see: how long a user waits, on the process runtime, sandboxed.

One command:

    .venv/bin/python bench/startup.py [--trials 5]

It starts ``moorage serve`` (process runtime, a fresh MOORAGE_HOME) and, as a normal
user (so each replica runs in the sandbox, as its owner's uid), per trial:

- **direct**: the same app (``python3 -m http.server``) started as a bare process on
  this host, timed from the spawn to its first HTTP 200: what no platform can beat.
- **moorage, create -> available**: POST the endpoint, poll GET until ``available``
  (the sandbox, the uid, the bridge, the readiness probe), then one request through
  the gateway, which must answer 200.
- **moorage, create -> wrong-port hint**: the app listens on 8080, not on ``$PORT``;
  timed until ``status_info`` says so.

Polls every 50 ms, so each figure is up to 50 ms late. Prints a table of the median
and the worst trial. Timings move with the CPU: compare the rows of one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from backends import free_port, moorage_serve, wait_http

POLL_S = 0.05
APP = "exec python3 -m http.server --bind 127.0.0.1 $PORT"
WRONG_PORT_APP = "exec python3 -m http.server --bind 127.0.0.1 8080"


class Client:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def call(self, method: str, path: str, body: object = None) -> Any:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response) if method != "GET" or "inference-api" not in path else None


def until(condition: Callable[[], bool], what: str, limit_s: float = 120) -> float:
    """Seconds until ``condition`` holds, polling; fails past ``limit_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit_s:
            sys.exit(f"never {what} within {limit_s:.0f} s")
        time.sleep(POLL_S)
    return time.monotonic() - started


def direct_start(scratch: Path) -> float:
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        ["python3", "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=scratch,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/", process)
        return time.monotonic() - started
    finally:
        process.terminate()
        process.wait(10)


def moorage_trial(user: Client, flavor_id: str, trial: int) -> tuple[float, float]:
    def create(name: str, command: str) -> str:
        body = {
            "name": name,
            "resource_metadata": {"flavor_id": flavor_id, "target_instance_number": 1},
            "deploy_metadata": {"image_url": "python:3.10-slim", "command": command, "port": 8080},
        }
        return str(user.call("POST", "/v1/inference-service", body)["service_id"])

    def endpoint(service_id: str) -> dict[str, Any]:
        return dict(user.call("GET", f"/v1/inference-service/{service_id}"))

    started = time.monotonic()
    good = create(f"startup-{trial}", APP)
    until(lambda: endpoint(good)["status"] == "available", "available")
    user.call("GET", f"/inference-api/v1/inference_service/{good}/")
    available = time.monotonic() - started
    bad = create(f"wrong-port-{trial}", WRONG_PORT_APP)
    hinted = until(
        lambda: "not on $PORT" in (endpoint(bad).get("status_info") or ""), "the wrong-port hint"
    )
    for service_id in (good, bad):
        user.call("DELETE", f"/v1/inference-service/{service_id}")
    return available, hinted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    options = parser.parse_args()
    rows: dict[str, list[float]] = {"direct": [], "available": [], "hint": []}
    with moorage_serve("mrg-bench-") as server:
        user = Client(server.url, server.user)
        flavor_id = user.call("GET", "/v1/inference-service/flavor")["flavor_list"][0]["flavor_id"]
        for trial in range(options.trials):
            rows["direct"].append(direct_start(server.home))
            available, hinted = moorage_trial(user, flavor_id, trial)
            rows["available"].append(available)
            rows["hint"].append(hinted)
            print(f"trial {trial + 1}/{options.trials} done", file=sys.stderr, flush=True)
    names = {
        "direct": "direct: spawn -> first HTTP 200 (bare process)",
        "available": "moorage: create -> available -> gateway 200",
        "hint": "moorage: create -> wrong-port hint in status_info",
    }
    print(f"{'what':52} {'median s':>9} {'worst s':>8}")
    for key, label in names.items():
        print(f"{label:52} {statistics.median(rows[key]):9.2f} {max(rows[key]):8.2f}")


if __name__ == "__main__":
    main()
