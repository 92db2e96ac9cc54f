"""A normal user's replica on the process runtime runs hostile code: it must reach nothing
of moorage's and nothing of the other tenants'.

Alice deploys a replica that, when called through the gateway, tries what an attacker
would: read moorage's environment (the admin token is in it), list and read other
processes, read the store, the admin token file, other replicas' folders, logs and
records, open the SQLite store for writing and make herself admin, and connect to every
Unix socket in ``MOORAGE_HOME`` (the API's private one, bob's replica's) and to the
host's loopback ports (moorage's, the admin's unsandboxed replica's, the store's). It
reports what it got; each attempt must have failed, its environment must be exactly the
documented set plus its endpoint's ``env``, and bob and the admin must still be served.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.server import (
    ApiClient,
    MoorageServer,
    endpoint_body,
    inline_app_command,
    new_user_token,
)

# Variables a replica may see besides its endpoint's env: moorage's documented ones,
# PWD (the shell sets it) and LC_CTYPE (Python's own C-locale coercion, PEP 538).
DOCUMENTED = {"PATH", "HOME", "PYTHONUNBUFFERED", "PORT", "MOORAGE_REPLICA_ID"}
DOCUMENTED |= {"MOORAGE_ENDPOINT_ID", "HF_HOME", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"}
ADDED_BY_THE_SHELL_OR_PYTHON = {"PWD", "LC_CTYPE"}

HOSTILE_APP = r"""
import glob, json, os, socket, sqlite3
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What this module checks is the sandbox, the same over either store.
STORES = ["sqlite"]

T = json.loads(os.environ["ATTACK_TARGETS"])


def attempt(action):
    try:
        return {"ok": True, "got": repr(action())[:4000]}
    except Exception as exc:
        return {"ok": False, "error": repr(exc)[:300]}


def read(path):
    with open(path, "rb") as handle:
        return handle.read(65536)


def processes():
    seen = {}
    for entry in glob.glob("/proc/[0-9]*"):
        pid = entry.rsplit("/", 1)[1]
        info = {}
        for part in ("cmdline", "environ"):
            try:
                info[part] = read(f"{entry}/{part}").replace(b"\0", b" ").decode(errors="replace")
            except OSError as exc:
                info[part] = f"unreadable: {exc.strerror}"
        seen[pid] = info
    return seen


def write_store(path):
    db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=1)
    db.execute("UPDATE users SET is_admin = 1 WHERE name = 'alice'")
    db.commit()
    return "wrote"


def unix(path):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(path)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return sock.recv(200)


def tcp(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return sock.recv(200)


def report():
    out = {"env": dict(os.environ), "processes": processes()}
    out["moorage_environ"] = attempt(lambda: read(f"/proc/{T['moorage_pid']}/environ"))
    out["home_listing"] = attempt(lambda: sorted(os.listdir(T["home"])))
    out["files"] = {p: attempt(lambda p=p: read(p)) for p in T["files"]}
    out["dirs"] = {p: attempt(lambda p=p: sorted(os.listdir(p))) for p in T["dirs"]}
    if T.get("sqlite"):
        out["store_write"] = attempt(lambda: write_store(T["sqlite"]))
    out["unix"] = {p: attempt(lambda p=p: unix(p)) for p in T["sockets"]}
    out["tcp"] = {str(p): attempt(lambda p=p: tcp(p)) for p in T["ports"]}
    return out


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(report() if self.path == "/report" else {"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


def _records(home: Path) -> list[dict[str, Any]]:
    records = []
    for path in (home / "replicas").glob("*/replica.json"):
        try:
            records.append({**json.loads(path.read_text()), "dir": str(path.parent)})
        except (OSError, ValueError):
            continue
    return records


def _replica_dirs(home: Path, endpoint_id: str) -> list[Path]:
    return [Path(r["dir"]) for r in _records(home) if r["endpoint_id"] == endpoint_id]


def _tcp_ports(home: Path, endpoint_id: str) -> list[int]:
    return [
        int(r["port"])
        for r in _records(home)
        if r["endpoint_id"] == endpoint_id and not (r.get("address") or "").startswith("unix:")
    ]


def _store_port(database_url: str) -> int | None:
    if database_url.startswith("sqlite"):
        return None
    return urlsplit(database_url.replace("postgresql+psycopg", "postgresql")).port


@pytest.fixture(scope="module")
def neighbours(admin: ApiClient, bob: ApiClient) -> Iterator[dict[str, str]]:
    """Bob's endpoint (sandboxed, like alice's) and the admin's (trusted, unsandboxed, on
    a loopback port), both available."""
    ids = {
        "bob": str(bob.create(name="bobs-app")["service_id"]),
        "admin": str(admin.create(name="admins-app")["service_id"]),
    }
    bob.wait_status(ids["bob"], "available")
    admin.wait_status(ids["admin"], "available")
    yield ids
    bob.call("DELETE", f"/v1/inference-service/{ids['bob']}")
    admin.call("DELETE", f"/v1/inference-service/{ids['admin']}")


@pytest.fixture(scope="module")
def report(
    server: MoorageServer, alice: ApiClient, neighbours: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """What alice's hostile replica could do, as it tells it through the gateway."""
    home = server.home
    assert server.process is not None
    bob_dirs = _replica_dirs(home, neighbours["bob"])
    admin_dirs = _replica_dirs(home, neighbours["admin"])
    assert bob_dirs
    assert admin_dirs
    sqlite = str(home / "moorage.db") if server.database_url.startswith("sqlite") else None
    files = [str(home / name) for name in ("moorage.db", "admin-token", "serve.log")]
    for replica_dir in bob_dirs + admin_dirs:
        files += [str(replica_dir / "output.log"), str(replica_dir / "replica.json")]
    ports = [server.port]
    ports += [p for e in neighbours.values() for p in _tcp_ports(home, e)]
    if (store_port := _store_port(server.database_url)) is not None:
        ports.append(store_port)
    targets = {
        "moorage_pid": server.process.pid,
        "home": str(home),
        "files": files,
        "dirs": [str(home), str(home / "replicas"), *map(str, bob_dirs + admin_dirs)],
        "sqlite": sqlite,
        "sockets": sorted({str(p) for p in home.rglob("*") if p.is_socket()}),
        "ports": ports,
    }
    env = {"ATTACK_TARGETS": json.dumps(targets), "INNOCENT": "a value of alice's"}
    service_id = str(
        alice.create(
            name="hostile", deploy_metadata={"command": inline_app_command(HOSTILE_APP), "env": env}
        )["service_id"]
    )
    try:
        alice.wait_status(service_id, "available")
        response = alice.gateway(service_id, "report")
        assert response.status_code == 200, response.text
        yield {"targets": targets, "endpoint_env": env, **response.json()}
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


def _succeeded(attempts: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {target: a.get("got", "") for target, a in attempts.items() if a["ok"]}


def test_the_replica_cannot_read_moorages_environment(
    server: MoorageServer, report: dict[str, Any]
) -> None:
    assert not report["moorage_environ"]["ok"], report["moorage_environ"]
    text = json.dumps({k: v for k, v in report.items() if k not in ("targets", "env")})
    assert server.admin_token is not None
    assert server.admin_token not in text, "the admin token reached the replica"
    assert "MOORAGE_HOME=" not in text, "moorage's environment reached the replica"


def test_the_replica_sees_no_process_but_its_own(report: dict[str, Any]) -> None:
    endpoint_id = report["env"]["MOORAGE_ENDPOINT_ID"]
    for pid, info in report["processes"].items():
        assert "serve" not in info["cmdline"].split(), f"moorage is visible as pid {pid}"
        environ = info["environ"]
        if not environ.startswith("unreadable"):
            assert f"MOORAGE_ENDPOINT_ID={endpoint_id}" in environ, (
                f"pid {pid} is not one of the replica's: {info}"
            )


def test_the_replica_reads_no_file_of_moorage_or_other_tenants(report: dict[str, Any]) -> None:
    assert _succeeded(report["files"]) == {}
    listed = report["home_listing"]
    if listed["ok"]:
        for secret in ("moorage.db", "admin-token", "serve.log"):
            assert secret not in listed["got"], f"MOORAGE_HOME lists {secret}: {listed}"
    others = {
        d: got
        for d, got in _succeeded(report["dirs"]).items()
        if d not in (report["targets"]["home"], report["targets"]["home"] + "/replicas")
    }
    assert others == {}, "another replica's folder can be listed"
    other_replicas = [Path(d).name for d in report["targets"]["dirs"][2:]]
    for d in (report["targets"]["home"], report["targets"]["home"] + "/replicas"):
        got = report["dirs"][d].get("got", "")
        for secret in ("moorage.db", "serve.log", *other_replicas):
            assert secret not in got, f"{d} lists {secret}"


def test_the_replica_cannot_write_the_store(
    alice: ApiClient, report: dict[str, Any], server: MoorageServer
) -> None:
    if server.database_url.startswith("sqlite"):
        assert not report["store_write"]["ok"], report["store_write"]
    assert alice.call("GET", "/v1/users").status_code == 403, "alice became admin"


def test_the_replica_reaches_no_socket_and_no_loopback_port(report: dict[str, Any]) -> None:
    assert report["targets"]["ports"], "nothing to try"
    assert _succeeded(report["unix"]) == {}
    assert _succeeded(report["tcp"]) == {}


def test_the_replica_environment_is_exactly_the_documented_set(report: dict[str, Any]) -> None:
    env: dict[str, str] = report["env"]
    assert set(env) - ADDED_BY_THE_SHELL_OR_PYTHON == DOCUMENTED | set(report["endpoint_env"])
    assert env["INNOCENT"] == "a value of alice's"
    assert env["HOME"] == env["PWD"], "HOME is the replica's own folder"


def test_the_neighbours_are_still_served(
    admin: ApiClient, bob: ApiClient, neighbours: dict[str, str], report: dict[str, Any]
) -> None:
    assert bob.gateway(neighbours["bob"]).status_code == 200
    assert admin.gateway(neighbours["admin"]).status_code == 200
    assert bob.gateway(neighbours["admin"]).status_code in (401, 403, 404)


# -- no sandbox here: refused at the API; and moorage's own files are its own ------------


@pytest.fixture
def unsandboxed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MoorageServer]:
    """A real ``moorage serve`` (SQLite, process runtime) whose bwrap is missing."""
    home = tmp_path_factory.mktemp("no-sandbox")
    running = MoorageServer(
        home=home,
        database_url=f"sqlite:///{home / 'moorage.db'}",
        extra_env={"MOORAGE_BWRAP_PATH": str(home / "no-such-bwrap")},
    ).start()
    try:
        yield running
    finally:
        running.stop()


def test_without_a_sandbox_a_normal_users_endpoint_is_refused_at_create(
    unsandboxed_server: MoorageServer,
) -> None:
    assert unsandboxed_server.admin_token is not None
    admin = ApiClient(unsandboxed_server.url, unsandboxed_server.admin_token)
    alice = ApiClient(unsandboxed_server.url, new_user_token(admin, "alice"))
    body = endpoint_body(alice.flavor_id(), name="refused")

    response = alice.call("POST", "/v1/inference-service", json=body)

    assert response.status_code == 503, response.text
    error = response.json()
    assert error["code"] == "sandbox_unavailable"
    assert "apt-get install bubblewrap" in error["message"]
    assert "MOORAGE_RUNTIME=docker" in error["message"]
    listed = alice.call("GET", "/v1/inference-service").json()
    assert listed["service_list"] == [], "a refused endpoint must not be stored"
    # The admin is trusted and still served: its replicas run unsandboxed.
    service_id = admin.create(name="admins")["service_id"]
    admin.wait_status(service_id, "available")
    assert admin.gateway(service_id).status_code == 200
    assert "sandbox" in unsandboxed_server.log()
    assert "refused" in unsandboxed_server.log()


def test_moorages_home_is_its_own_and_its_files_are_0600(server: MoorageServer) -> None:
    home = server.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    checked = [home / "moorage.db", home / "admin-token"]
    checked += list((home / "replicas").glob("*/output.log"))
    for path in (p for p in checked if p.exists()):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}: others can read it"
    assert stat.S_IMODE((home / "replicas").stat().st_mode) & 0o077 == 0
