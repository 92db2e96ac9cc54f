"""Replica logs no tenant can abuse, against a real ``moorage serve``.

A replica that prints without end gets its log rotated at ``MOORAGE_LOG_MAX_BYTES``
and cannot fill the disk; ``tail`` reads from the end, off the event loop; a user
holds at most ``MOORAGE_QUOTA_LOG_FOLLOWERS`` followers at once and a client that
leaves frees its slot; a deleted endpoint's replica folders go after
``MOORAGE_LOG_RETENTION_S``. Meanwhile other users are served promptly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests

from tests.support.server import ApiClient, MoorageServer, inline_app_command, wait_for

# What this module checks is the replicas' log files, the same over either store.
STORES = ["sqlite"]
RUNTIMES = ["process", "docker"]
LOG_MAX_BYTES = 64 * 1024
FILE_MAX_BYTES = 1024 * 1024
FOLLOWERS = 20
RETENTION_S = 3
SERVER_ENV = {
    "MOORAGE_LOG_MAX_BYTES": str(LOG_MAX_BYTES),
    "MOORAGE_LOG_CHECK_INTERVAL_S": "0.2",
    "MOORAGE_REPLICA_FILE_MAX_BYTES": str(FILE_MAX_BYTES),
    "MOORAGE_LOG_RETENTION_S": str(RETENTION_S),
    "MOORAGE_QUOTA_LOG_FOLLOWERS": str(FOLLOWERS),
}
LOGS = "/v1/inference-service/{}/logs"
PROMPT_S = 1.0

# Prints about 10 MB/s (100 lines of 107 bytes every millisecond or so) and serves
# HTTP on $PORT; a write refused by the file-size backstop (EFBIG) is retried later.
FLOOD_APP = """\
import http.server, os, threading, time

def flood():
    block = ("flood " + "x" * 100 + "\\n").encode() * 1000
    while True:
        try:
            os.write(1, block)
        except OSError:
            pass
        time.sleep(0.01)

class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # only flood lines in the log: no probe lines
        pass

threading.Thread(target=flood, daemon=True).start()
os.write(1, b"flood app serving\\n")
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Quiet).serve_forever()
"""

# Prints ten numbered lines, then serves without printing anything more.
QUIET_APP = """\
import http.server, os

class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

for number in range(10):
    os.write(1, f"quiet line {number}\\n".encode())
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Quiet).serve_forever()
"""


@contextlib.contextmanager
def _endpoint(client: ApiClient, name: str, source: str) -> Iterator[str]:
    created = client.create(name=name, deploy_metadata={"command": inline_app_command(source)})
    service_id = str(created["service_id"])
    try:
        client.wait_status(service_id, "available", timeout=90)
        yield service_id
    finally:
        client.call("DELETE", f"/v1/inference-service/{service_id}")


@pytest.fixture(scope="module")
def quiet(alice: ApiClient) -> Iterator[str]:
    with _endpoint(alice, "logs-quiet", QUIET_APP) as service_id:
        yield service_id


def _replica_ids(client: ApiClient, service_id: str) -> list[str]:
    replicas = client.get(service_id)["endpoint_metadata"]["replicas"]
    return [str(r["replica_id"]) for r in replicas]


def _prompt(client: ApiClient) -> float:
    """How long one ordinary API call of another user takes; it must succeed."""
    started = time.monotonic()
    response = client.call("GET", "/v1/inference-service")
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def _folder_bytes(folder: Path) -> int:
    total = 0
    for file in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if file.is_file():
                total += file.stat().st_size
    return total


def _engine_log_bytes(server: MoorageServer, replica_id: str) -> int | None:
    assert server.docker_host is not None
    client = docker.DockerClient(base_url=server.docker_host)
    try:
        (container,) = client.containers.list(
            all=True, filters={"label": f"io.moorage.replica={replica_id}"}
        )
        path = Path(container.attrs.get("LogPath") or "/nonexistent")
        if not path.exists():
            return None
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    finally:
        client.close()


def test_a_flooding_replica_has_its_log_rotated_and_bounded(
    server: MoorageServer, alice: ApiClient, bob: ApiClient
) -> None:
    with _endpoint(alice, "logs-flood", FLOOD_APP) as service_id:
        (replica_id,) = _replica_ids(alice, service_id)
        if server.runtime == "process":
            folder = server.home / "replicas" / replica_id
            bound = 2 * FILE_MAX_BYTES + 64 * 1024  # the log and its one rotated file
            wait_for(
                lambda: (folder / "output.log.1").exists(),
                timeout=30,
                what="the flooding replica's log to be rotated",
            )
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                used = _folder_bytes(folder)
                assert used <= bound, f"{used} bytes in {folder}, over {bound}"
                assert _prompt(bob) < PROMPT_S
                time.sleep(0.1)
        else:
            used_by_engine = _engine_log_bytes(server, replica_id)
            if used_by_engine is None:
                pytest.skip("the engine's log file is not readable from here")
            time.sleep(3)  # about 30 MB printed by now
            used_by_engine = _engine_log_bytes(server, replica_id)
            assert used_by_engine is not None
            assert used_by_engine <= 2 * LOG_MAX_BYTES + 64 * 1024, used_by_engine
            assert _prompt(bob) < PROMPT_S
        # The rotated log still answers, from its end.
        tail = alice.call("GET", LOGS.format(service_id), params={"tail": "3"})
        assert tail.status_code == 200, tail.text
        lines = tail.text.splitlines()
        assert len(lines) <= 3, lines
        assert all(line.startswith("flood ") for line in lines), lines


def test_tail_on_a_big_log_answers_quickly_from_the_end(
    server: MoorageServer, alice: ApiClient, bob: ApiClient, quiet: str
) -> None:
    if server.runtime != "process":
        pytest.skip("the engine keeps docker logs; a big log is the process runtime's own file")
    (replica_id,) = _replica_ids(alice, quiet)
    folder = server.home / "replicas" / replica_id
    # A big rotated file (as if the cap was higher before), and the live log's 10 lines.
    line = b"old line " + b"o" * 90 + b"\n"
    with (folder / "output.log.1").open("wb") as big:
        for _ in range(64):
            big.write(line * 10_000)  # 64 x 1 MB
        big.write(b"last old line\n")
    try:
        started = time.monotonic()
        response = alice.call("GET", LOGS.format(quiet), params={"tail": "12"})
        took = time.monotonic() - started
        assert response.status_code == 200, response.text
        lines = response.text.splitlines()
        assert lines[:2] == ["old line " + "o" * 90, "last old line"], lines
        assert lines[2:] == [f"quiet line {n}" for n in range(10)], lines
        assert took < PROMPT_S, f"tail=12 took {took:.2f} s"

        five = alice.call("GET", LOGS.format(quiet), params={"tail": "5"})
        assert five.text.splitlines() == [f"quiet line {n}" for n in range(5, 10)]

        # A whole-log read is bounded and does not stall other users.
        with requests.get(
            alice.base + LOGS.format(quiet), headers=alice.headers, stream=True, timeout=30
        ) as whole:
            assert whole.status_code == 200
            first = next(whole.iter_content(64 * 1024))
            assert first
            assert _prompt(bob) < PROMPT_S
    finally:
        (folder / "output.log.1").unlink(missing_ok=True)


def _open_follower(client: ApiClient, service_id: str) -> requests.Response:
    return requests.get(
        client.base + LOGS.format(service_id),
        params={"follow": "true", "tail": "1"},
        headers=client.headers,
        stream=True,
        timeout=(5, 30),
    )


def test_the_follower_quota_refuses_the_next_and_frees_a_slot_on_disconnect(
    alice: ApiClient, bob: ApiClient, quiet: str
) -> None:
    held: list[requests.Response] = []
    # Kept: a line iterator that goes away closes its connection (urllib3).
    readers: list[Iterator[bytes]] = []
    try:
        for _ in range(FOLLOWERS):
            follower = _open_follower(alice, quiet)
            held.append(follower)
            assert follower.status_code == 200, follower.text
            readers.append(follower.iter_lines())
            assert next(readers[-1]) == b"quiet line 9"  # streaming, not queued

        refused = _open_follower(alice, quiet)
        held.append(refused)
        assert refused.status_code == 429, refused.headers  # .text would wait: a stream
        body = refused.json()
        assert body["code"] == "quota_exceeded"
        assert "log_followers" in body["message"]
        assert str(FOLLOWERS) in body["message"]

        # Another user is served promptly, and follows with a quota of their own.
        durations = [_prompt(bob) for _ in range(5)]
        assert max(durations) < PROMPT_S, durations
        theirs = bob.call("GET", LOGS.format(quiet), params={"follow": "true"})
        assert theirs.status_code == 404  # not bob's endpoint: the quota is not the answer

        # A client that leaves frees its slot.
        held.pop(0).close()
        readers.pop(0)

        def slot_free() -> bool:
            follower = _open_follower(alice, quiet)
            held.append(follower)
            return follower.status_code == 200

        wait_for(slot_free, timeout=15, what="a slot freed by a disconnected follower")
    finally:
        for follower in held:
            follower.close()

    # Every slot comes back once all of them left.
    def all_free() -> bool:
        opened = [_open_follower(alice, quiet) for _ in range(FOLLOWERS)]
        try:
            return all(f.status_code == 200 for f in opened)
        finally:
            for f in opened:
                f.close()

    wait_for(all_free, timeout=15, what=f"all {FOLLOWERS} follower slots free again")


def test_a_deleted_endpoints_replica_folders_go_after_the_retention(
    server: MoorageServer, alice: ApiClient, quiet: str
) -> None:
    if server.runtime != "process":
        pytest.skip("the docker runtime keeps no folders: the engine removes a container's logs")
    created = alice.create(
        name="logs-retention", deploy_metadata={"command": inline_app_command(QUIET_APP)}
    )
    service_id = str(created["service_id"])
    try:
        alice.wait_status(service_id, "available", timeout=90)
        folders = [server.home / "replicas" / r for r in _replica_ids(alice, service_id)]
        assert folders
        assert all(f.is_dir() for f in folders)
    finally:
        deleted = alice.call("DELETE", f"/v1/inference-service/{service_id}")
        assert deleted.status_code == 200, deleted.text
    wait_for(
        lambda: not any(f.exists() for f in folders),
        timeout=RETENTION_S + 30,
        what=f"{folders} removed after the {RETENTION_S} s retention",
    )
    # A live replica's folder stays, however old.
    (live,) = _replica_ids(alice, quiet)
    assert (server.home / "replicas" / live / "output.log").exists()
