"""Each owner's sandboxed replicas run as a host uid of their own, so no two users'
replicas ever share one: were a replica to reach the host's ``/proc`` or another
user's folder, the kernel would still keep it from their ``/proc/PID/environ`` (their
secrets) and their 0700 files.

Against a real ``moorage serve`` run as root (as CI does) on the process runtime:
alice's and bob's replicas report their ``id -u``; the uids differ, are neither
65534 nor 0, and each user's volume and model-cache folders on the host are that
uid's, 0700. Alice's second replica runs as her uid too. Then moorage is killed and
started again: alice's running replica is adopted with its uid, and bob's new
replica gets the uid he had.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import (
    ApiClient,
    MoorageServer,
    free_port,
    inline_app_command,
    processes_with_env,
)

VOLUME = "/mnt/data"
DEFAULT_BASE = 2_000_000_000

WHOAMI_APP = r"""
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

volume = os.environ.get("VOLUME")
if volume:
    with open(os.path.join(volume, "written-by-replica"), "w") as handle:
        handle.write(os.environ["MOORAGE_REPLICA_ID"])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(
            {"uid": os.getuid(), "gid": os.getgid(), "replica": os.environ["MOORAGE_REPLICA_ID"]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


@dataclass
class User:
    user_id: str
    client: ApiClient


@dataclass
class Installation:
    """One moorage (home, SQLite store, port) that the test kills and starts again."""

    home: Path
    port: int = field(default_factory=free_port)
    server: MoorageServer | None = None
    endpoints: list[str] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.home / 'moorage.db'}"

    def start(self) -> MoorageServer:
        self.server = MoorageServer(
            home=self.home, database_url=self.database_url, port=self.port
        ).start()
        return self.server

    def admin(self) -> ApiClient:
        assert self.server is not None
        assert self.server.admin_token is not None
        return ApiClient(self.server.url, self.server.admin_token)

    def user(self, name: str) -> User:
        admin = self.admin()
        created = admin.call("POST", "/v1/users", json={"name": name})
        assert created.status_code == 201, created.text
        user_id = str(created.json()["user_id"])
        token = admin.call("POST", "/v1/tokens", json={"user_id": user_id})
        assert token.status_code == 201, token.text
        return User(user_id, ApiClient(self.admin().base, str(token.json()["token"])))

    def whoami(self, user: User, name: str, *, volume: bool) -> dict[str, Any]:
        """Deploys the app for ``user`` and returns what its replica says it runs as."""
        deploy: dict[str, Any] = {"command": inline_app_command(WHOAMI_APP)}
        if volume:
            deploy["env"] = {"VOLUME": VOLUME}
            deploy["volumes"] = [{"name": "data", "mount_path": VOLUME}]
        service_id = str(user.client.create(name=name, deploy_metadata=deploy)["service_id"])
        self.endpoints.append(service_id)
        return self.ask(user, service_id)

    def ask(self, user: User, service_id: str) -> dict[str, Any]:
        user.client.wait_status(service_id, "available", timeout=90)
        response = user.client.gateway(service_id)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def kill_leftovers(self) -> None:
        """Whatever replica a failed test left running (a killed moorage leaves them)."""
        for service_id in self.endpoints:
            for pid in processes_with_env("MOORAGE_ENDPOINT_ID", service_id):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    if os.geteuid() != 0:
        pytest.skip("owners' uids need moorage to run as root (CI runs as root)")
    running = Installation(tmp_path_factory.mktemp("owner-uids"))
    try:
        running.start()
        yield running
    finally:
        if running.server is not None:
            running.server.stop()
        running.kill_leftovers()


@dataclass
class Seen:
    alice: User
    bob: User
    alice_first: dict[str, Any]
    alice_second: dict[str, Any]
    bob_first: dict[str, Any]
    alice_service: str


@pytest.fixture(scope="module")
def seen(installation: Installation) -> Seen:
    alice, bob = installation.user("alice"), installation.user("bob")
    alice_first = installation.whoami(alice, "alice-1", volume=True)
    alice_service = installation.endpoints[-1]
    bob_first = installation.whoami(bob, "bob-1", volume=True)
    alice_second = installation.whoami(alice, "alice-2", volume=False)
    return Seen(alice, bob, alice_first, alice_second, bob_first, alice_service)


def test_two_users_replicas_run_as_two_uids_neither_shared_nor_privileged(seen: Seen) -> None:
    alice, bob = seen.alice_first, seen.bob_first
    assert alice["uid"] != bob["uid"], "two users' replicas share a uid"
    for said in (alice, bob):
        assert said["uid"] not in (0, 65534), said
        assert said["gid"] == said["uid"], said
        assert DEFAULT_BASE <= said["uid"] < DEFAULT_BASE + 65536, said


def test_a_users_second_replica_runs_as_the_same_uid(seen: Seen) -> None:
    assert seen.alice_second["uid"] == seen.alice_first["uid"]


def _owned(path: Path, uid: int) -> None:
    info = path.lstat()
    assert stat.S_ISDIR(info.st_mode), path
    assert (info.st_uid, info.st_gid) == (uid, uid), f"{path} is not uid {uid}'s"
    assert stat.S_IMODE(info.st_mode) == 0o700, f"{path} is {oct(info.st_mode)}"


def test_each_users_folders_on_the_host_are_that_users_uids_alone(
    installation: Installation, seen: Seen
) -> None:
    for user, said in ((seen.alice, seen.alice_first), (seen.bob, seen.bob_first)):
        volume = installation.home / "volumes" / user.user_id / "data"
        _owned(volume, said["uid"])
        written = volume / "written-by-replica"
        assert written.read_text() == said["replica"]
        assert written.stat().st_uid == said["uid"]
        _owned(installation.home / "model-cache" / user.user_id, said["uid"])


def test_the_store_records_which_uid_is_whose(installation: Installation, seen: Seen) -> None:
    """What docs/runtimes.md tells the operator to query."""
    with sqlite3.connect(installation.home / "moorage.db") as db:
        rows = dict(db.execute("SELECT user_id, uid FROM sandbox_uids").fetchall())
    assert rows[seen.alice.user_id] == seen.alice_first["uid"]
    assert rows[seen.bob.user_id] == seen.bob_first["uid"]


def test_after_a_restart_running_replicas_keep_their_uid_and_new_ones_get_the_same(
    installation: Installation, seen: Seen
) -> None:
    assert installation.server is not None
    assert installation.server.stop(signal.SIGKILL) == -signal.SIGKILL
    installation.start()
    adopted = installation.ask(seen.alice, seen.alice_service)
    assert adopted == seen.alice_first, "the running replica was not adopted as it was"
    bob_again = installation.whoami(seen.bob, "bob-2", volume=True)
    assert bob_again["uid"] == seen.bob_first["uid"]
    assert json.dumps(bob_again) != json.dumps(seen.bob_first), "a new replica, not the old"


def test_moorage_refuses_to_start_on_a_range_that_holds_a_host_account(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("owners' uids need moorage to run as root (CI runs as root)")
    account = next(user for user in pwd.getpwall() if user.pw_uid > 0)
    server = MoorageServer(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'moorage.db'}",
        extra_env={
            "MOORAGE_SANDBOX_UID_BASE": str(account.pw_uid),
            "MOORAGE_SANDBOX_UID_COUNT": "1",
        },
    )
    with pytest.raises(AssertionError, match="exited early") as caught:
        server.start()
    assert f"user {account.pw_name} (uid {account.pw_uid})" in str(caught.value)
    assert "MOORAGE_SANDBOX_UID_BASE" in str(caught.value)
