"""A gateway started under the common soft limit of 1024 open files can still hold
thousands of streams: it lifts the limit to the hard one at start."""

from __future__ import annotations

import json
import re
import resource
import subprocess
from pathlib import Path

import requests

from tests.support.server import MOORAGE, free_port, wait_for

# What this module checks is the gateway's limits, the same over either store.
STORES = ["sqlite"]


def _low_soft_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


def test_the_gateway_lifts_its_open_file_limit_to_the_hard_limit(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"endpoints": []}))
    port = free_port()
    process = subprocess.Popen(
        [MOORAGE, "gateway", "--routes", str(routes), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_low_soft_limit,
    )
    try:

        def healthy() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(healthy, timeout=20, what="moorage gateway to listen")
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        match = re.search(r"^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)", limits, re.M)
        assert match is not None, limits
        soft, hard = match.groups()
        assert soft == hard or (hard == "unlimited" and int(soft) >= 1 << 20)
    finally:
        process.terminate()
        process.wait(timeout=20)
