"""The model cache: what one replica of a user writes there, another replica of the
same user finds, and another user's replica does not.

alice runs two endpoints and bob one, each an app that writes and reads files in
``$HF_HOME``. alice's first replica writes a file; her second endpoint's replica reads
it back; bob's replica, asking for the same name, finds nothing.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator

import pytest

from tests.support.server import ApiClient, MoorageServer, inline_app_command

STORES = ["sqlite"]
RUNTIMES = ["process", "docker"]

# GET /write/NAME writes NAME in $HF_HOME with a body of NAME reversed; GET /read/NAME
# answers the file, or 404. GET / answers HF_HOME; GET /folders whether HF_HOME is a
# folder and the hub cache one the replica can write, before it made either; GET /mount
# the cache's line of /proc/mounts.
CACHE_APP = r"""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

home = os.environ.get("HF_HOME", "")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        parts = self.path.strip("/").split("/")
        status, body = 200, home.encode()
        if parts == ["mount"]:
            with open("/proc/mounts") as mounts:
                found = [line for line in mounts if " /mnt/model-cache " in line]
            body = "".join(found).encode()
        elif parts == ["folders"]:
            hub = os.environ.get("HUGGINGFACE_HUB_CACHE", "")
            body = f"{os.path.isdir(home)} {os.access(hub, os.W_OK)}".encode()
        elif parts[-2:-1] == ["write"]:
            with open(os.path.join(home, parts[-1]), "w") as out:
                out.write(parts[-1][::-1])
            body = b"written"
        elif parts[-2:-1] == ["read"]:
            try:
                with open(os.path.join(home, parts[-1]), "rb") as src:
                    body = src.read()
            except OSError as exc:
                status, body = 404, str(exc).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def endpoints(alice: ApiClient, bob: ApiClient) -> Iterator[dict[str, tuple[ApiClient, str]]]:
    started: dict[str, tuple[ApiClient, str]] = {}
    try:
        for key, client in (("alice-1", alice), ("alice-2", alice), ("bob", bob)):
            created = client.create(
                name=f"cache-{key}",
                deploy_metadata={"command": inline_app_command(CACHE_APP), "port": 8080},
            )
            started[key] = (client, str(created["service_id"]))
        for client, service_id in started.values():
            client.wait_status(service_id, "available", timeout=120)
        yield started
    finally:
        for client, service_id in started.values():
            client.call("DELETE", f"/v1/inference-service/{service_id}")


def test_a_users_replicas_share_the_cache_and_no_other_user_sees_it(
    endpoints: dict[str, tuple[ApiClient, str]],
) -> None:
    name = "weights-" + secrets.token_hex(8)
    client, first = endpoints["alice-1"]
    assert client.gateway(first, f"write/{name}").text == "written"

    client, second = endpoints["alice-2"]
    found = client.gateway(second, f"read/{name}")
    assert found.status_code == 200, found.text
    assert found.text == name[::-1]

    bob, bobs = endpoints["bob"]
    assert bob.gateway(bobs, f"read/{name}").status_code == 404


def test_hf_home_is_under_the_documented_path(endpoints: dict[str, tuple[ApiClient, str]]) -> None:
    client, service_id = endpoints["alice-1"]
    assert client.gateway(service_id).text == "/mnt/model-cache/huggingface"


def test_the_folders_the_variables_name_are_there_and_writable(
    endpoints: dict[str, tuple[ApiClient, str]],
) -> None:
    client, service_id = endpoints["bob"]
    assert client.gateway(service_id, "folders").text == "True True"


def test_nothing_set_user_id_nor_a_device_works_in_the_cache(
    endpoints: dict[str, tuple[ApiClient, str]],
) -> None:
    """A replica (root in its container) writes files that stay on the host: a
    set-user-id binary or a device node it leaves there must never take effect."""
    client, service_id = endpoints["alice-1"]
    mount = client.gateway(service_id, "mount").text
    assert mount, "the cache is mounted"
    options = mount.split()[3].split(",")
    assert "nosuid" in options, mount
    assert "nodev" in options, mount


def test_each_users_folder_is_0700(
    endpoints: dict[str, tuple[ApiClient, str]], server: MoorageServer
) -> None:
    folders = list((server.home / "model-cache").iterdir())
    assert len(folders) == 2, folders  # alice's and bob's
    for folder in folders:
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
