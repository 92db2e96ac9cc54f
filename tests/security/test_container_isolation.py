"""Replicas on the docker runtime cannot reach each other, nor moorage, except
through the gateway; their environment is only what their endpoint asked for.

A real ``moorage serve`` on the docker runtime (``MOORAGE_TEST_DOCKER_HOST``).
alice's replica runs a small app that fetches any URL it is given and shows its
environment; from inside it, alice tries bob's container directly (its address
from the engine, its port), moorage's own port and bob's published port on the
host's side of her network.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.conftest import database
from tests.e2e.conftest import docker_host
from tests.support.server import ApiClient, MoorageServer, inline_app_command

RUNTIMES = ["process", "docker"]  # the process runtime's variant is skipped: see server()
CONTAINER_PORT = 8080
# What the engine and the image add on their own (not moorage, not the server's).
ENGINE_ADDED = {"PATH", "HOME", "HOSTNAME", "TERM", "container", "PWD", "SHLVL", "LANG"}
ENGINE_ADDED |= {"LC_CTYPE"}  # set by Python itself in a C locale (PEP 538)
# What moorage documents (docs/runtimes.md, docker).
DOCUMENTED = {"PORT", "MOORAGE_REPLICA_ID", "MOORAGE_ENDPOINT_ID", "PYTHONUNBUFFERED"}
DOCUMENTED |= {"HF_HOME", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"}  # the model cache

PROBE_APP = """\
import http.server, json, os, urllib.error, urllib.parse, urllib.request

class Probe(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/env":
            body = dict(os.environ)
        elif url.path == "/fetch":
            target = urllib.parse.parse_qs(url.query)["url"][0]
            try:
                with urllib.request.urlopen(target, timeout=3) as answer:
                    body = {"reached": True, "status": answer.status,
                            "body": answer.read(300).decode(errors="replace")}
            except urllib.error.HTTPError as exc:
                body = {"reached": True, "status": exc.code}
            except Exception as exc:
                body = {"reached": False, "error": repr(exc)}
        else:
            body = {"owner": os.environ.get("OWNER")}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Probe).serve_forever()
"""


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MoorageServer]:
    """The e2e server, on the docker runtime only (the process runtime's isolation is
    another module's)."""
    store, runtime = request.param
    if runtime != "docker":
        pytest.skip("container isolation: the docker runtime only")
    home = tmp_path_factory.mktemp("moorage-home")
    with database(store, home) as url:
        running = MoorageServer(
            home=home, database_url=url, runtime="docker", docker_host=docker_host()
        ).start()
        try:
            yield running
        finally:
            running.stop()


@contextlib.contextmanager
def _endpoint(client: ApiClient, name: str, env: dict[str, str]) -> Iterator[str]:
    created = client.create(
        name=name,
        deploy_metadata={
            "command": inline_app_command(PROBE_APP),
            "port": CONTAINER_PORT,
            "env": env,
        },
    )
    service_id = str(created["service_id"])
    try:
        client.wait_status(service_id, "available", timeout=120)
        yield service_id
    finally:
        client.call("DELETE", f"/v1/inference-service/{service_id}")


@pytest.fixture(scope="module")
def engine(server: MoorageServer) -> Iterator[docker.DockerClient]:
    assert server.docker_host is not None
    client = docker.DockerClient(base_url=server.docker_host)
    try:
        yield client
    finally:
        client.close()


ALICE_ENV = {"OWNER": "alice", "MODEL": "tiny 'quoted' $HOME"}


@pytest.fixture(scope="module")
def alices(alice: ApiClient) -> Iterator[str]:
    with _endpoint(alice, "isolation-alice", ALICE_ENV) as service_id:
        yield service_id


@pytest.fixture(scope="module")
def bobs(bob: ApiClient) -> Iterator[str]:
    with _endpoint(bob, "isolation-bob", {"OWNER": "bob"}) as service_id:
        yield service_id


def _container(engine: docker.DockerClient, service_id: str) -> Any:
    (container,) = engine.containers.list(filters={"label": f"io.moorage.endpoint={service_id}"})
    return container


def _host_addresses() -> list[str]:
    """The host's IPv4 addresses other than loopback, as a container could dial them."""
    found = subprocess.run(
        ["hostname", "-I"], capture_output=True, text=True, check=False
    ).stdout.split()
    return [address for address in found if "." in address and not address.startswith("127.")]


def _fetch(alice: ApiClient, alices: str, url: str) -> dict[str, Any]:
    answer = alice.gateway(alices, "fetch", params={"url": url})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_alices_container_cannot_reach_bobs_directly(
    engine: docker.DockerClient, alice: ApiClient, bob: ApiClient, alices: str, bobs: str
) -> None:
    settings = _container(engine, bobs).attrs["NetworkSettings"]
    addresses = [
        f"{network['IPAddress']}:{CONTAINER_PORT}"
        for network in (settings.get("Networks") or {}).values()
        if network.get("IPAddress")
    ]
    # Where the engine gives each container a namespace of its own (slirp4netns on
    # Podman before 4.5) bob's container has no address alice could route to; what
    # she could try instead is his published port on every address of the host.
    published = _container(engine, bobs).labels["io.moorage.host-port"]
    addresses += [f"{host}:{published}" for host in _host_addresses()]
    assert addresses, "the engine gave bob's container no address"
    for address in addresses:
        tried = _fetch(alice, alices, f"http://{address}/")
        assert not tried["reached"], f"alice reached bob's container at {address}: {tried}"

    # bob is still served, through the gateway, and so is alice.
    theirs = bob.gateway(bobs)
    assert theirs.status_code == 200, theirs.text
    assert theirs.json() == {"owner": "bob"}
    assert alice.gateway(alices).json() == {"owner": "alice"}
    # Without bob's token, the gateway does not let alice in either.
    assert alice.gateway(bobs).status_code in (401, 403, 404)


def test_alices_container_cannot_reach_moorage_or_published_ports_on_the_host(
    server: MoorageServer,
    engine: docker.DockerClient,
    alice: ApiClient,
    alices: str,
    bobs: str,
) -> None:
    networks = (_container(engine, alices).attrs["NetworkSettings"].get("Networks") or {}).values()
    # The bridge's gateway, slirp4netns's host alias, and the host's own addresses.
    gateways = {n["Gateway"] for n in networks if n.get("Gateway")} | {"10.0.2.2"}
    gateways |= set(_host_addresses())
    published = _container(engine, bobs).labels["io.moorage.host-port"]
    for host in gateways:
        for port in (server.port, int(published)):
            tried = _fetch(alice, alices, f"http://{host}:{port}/")
            assert not tried["reached"], f"alice reached the host at {host}:{port}: {tried}"
    for port in (server.port, int(published)):  # the container's own loopback is its own
        assert not _fetch(alice, alices, f"http://127.0.0.1:{port}/")["reached"]


def test_alices_environment_is_what_she_asked_for_and_what_is_documented(
    engine: docker.DockerClient, alice: ApiClient, alices: str
) -> None:
    answer = alice.gateway(alices, "env")
    assert answer.status_code == 200, answer.text
    env: dict[str, str] = answer.json()
    container = _container(engine, alices)
    image_env = {
        item.partition("=")[0] for item in (container.image.attrs["Config"].get("Env") or [])
    }
    unexpected = set(env) - set(ALICE_ENV) - DOCUMENTED - ENGINE_ADDED - image_env
    assert not unexpected, f"not asked for nor documented: {json.dumps(sorted(unexpected))}"
    assert {k: env[k] for k in ALICE_ENV} == ALICE_ENV
    assert env["PORT"] == str(CONTAINER_PORT)
    assert env["MOORAGE_ENDPOINT_ID"] == alices
    assert {k for k in env if k.startswith("MOORAGE_")} == {
        "MOORAGE_REPLICA_ID",
        "MOORAGE_ENDPOINT_ID",
    }
