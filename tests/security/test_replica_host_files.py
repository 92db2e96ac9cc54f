"""A sandboxed replica sees the host's system files, never people's or services' files.

The test plants a file in a home folder under ``/home`` and one in ``/root`` (so it
runs as root, as CI does), then alice's replica on the process runtime tries to list
and read them, and lists every folder docs/runtimes.md says is hidden. It must find
none of the planted files and none of what the host keeps there, only the folders
leading to what moorage shows it (its own interpreter, its work folder).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ApiClient, MoorageServer, inline_app_command

# What this module checks is the sandbox, the same over either store.
STORES = ["sqlite"]
# docs/runtimes.md, process: what a sandboxed replica sees as empty folders.
HIDDEN = (
    "/home",
    "/root",
    "/run",
    "/srv",
    "/mnt",
    "/media",
    "/var/lib",
    "/var/spool",
    "/var/mail",
    "/var/log",
    "/var/cache",
    "/var/backups",
    "/var/www",
    "/var/opt",
)

SNOOP_APP = r"""
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

T = json.loads(os.environ["SNOOP_TARGETS"])


def attempt(action):
    try:
        return {"ok": True, "got": action()}
    except Exception as exc:
        return {"ok": False, "error": repr(exc)[:300]}


def read(path):
    with open(path, "rb") as handle:
        return handle.read(4096).decode(errors="replace")


def report():
    return {
        "dirs": {p: attempt(lambda p=p: sorted(os.listdir(p))) for p in T["dirs"]},
        "files": {p: attempt(lambda p=p: read(p)) for p in T["files"]},
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(report()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def planted() -> Iterator[dict[str, str]]:
    """A home folder with a ``.bashrc`` under ``/home`` and a file in ``/root``, each
    holding a secret; removed afterwards. path -> its secret."""
    if os.geteuid() != 0:
        pytest.skip("planting files in /home and /root needs root (CI runs as root)")
    name = f"moorage-planted-{secrets.token_hex(4)}"
    home = Path("/home") / name
    files = {home / ".bashrc": secrets.token_hex(16), Path("/root") / name: secrets.token_hex(16)}
    try:
        home.mkdir(mode=0o755, parents=True)
        for path, secret in files.items():
            path.write_text(f"export API_KEY={secret}\n")
            path.chmod(0o644)  # readable by anyone on the host: only the sandbox hides it
        yield {str(path): secret for path, secret in files.items()}
    finally:
        shutil.rmtree(home, ignore_errors=True)
        for path in files:
            path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def report(server: MoorageServer, alice: ApiClient, planted: dict[str, str]) -> dict[str, Any]:
    """What alice's replica could list and read, as it tells it through the gateway."""
    dirs = [d for d in HIDDEN if Path(d).is_dir()] + [str(Path(p).parent) for p in planted]
    targets = {"dirs": sorted(set(dirs)), "files": sorted(planted)}
    service_id = str(
        alice.create(
            name="snoop",
            deploy_metadata={
                "command": inline_app_command(SNOOP_APP),
                "env": {"SNOOP_TARGETS": json.dumps(targets)},
            },
        )["service_id"]
    )
    try:
        alice.wait_status(service_id, "available")
        response = alice.gateway(service_id)
        assert response.status_code == 200, response.text
        return dict(response.json())
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


def _shown_on_purpose(server: MoorageServer) -> set[str]:
    """Names of the folders leading to what the sandbox shows inside a hidden folder:
    moorage's interpreter (the bridge runs on it) and the replica's own work folder."""
    shown = [Path(sys.prefix), Path(sys.base_prefix), server.home]
    return {part for path in shown for part in path.resolve().parts[1:]}


def test_the_planted_files_cannot_be_read(report: dict[str, Any], planted: dict[str, str]) -> None:
    for path, secret in planted.items():
        attempt = report["files"][path]
        assert not attempt["ok"], f"the replica read {path}"
        assert secret not in json.dumps(report), f"{path}'s content reached the replica"


def test_the_planted_files_cannot_be_listed(
    report: dict[str, Any], planted: dict[str, str]
) -> None:
    for path in map(Path, planted):
        top, name = f"/{path.parts[1]}", path.parts[2]  # /home and the folder, /root and the file
        assert name not in report["dirs"][top].get("got", []), f"the replica lists {path}"
        if path.parent != Path(top):
            assert report["dirs"][str(path.parent)].get("got") in (None, []), (
                f"the replica lists {path.parent}"
            )


def test_people_and_services_folders_show_nothing_of_the_hosts(
    server: MoorageServer, report: dict[str, Any]
) -> None:
    on_purpose = _shown_on_purpose(server)
    for folder in HIDDEN:
        if not Path(folder).is_dir():
            continue
        attempt = report["dirs"][folder]
        assert attempt["ok"], f"{folder}: {attempt}"
        seen = set(attempt["got"]) & set(os.listdir(folder))
        assert seen <= on_purpose, f"the replica sees the host's {sorted(seen)} in {folder}"
