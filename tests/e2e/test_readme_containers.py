"""The README's Containers section, run as written against the suite's container engine:
prepare the engine, build an image with no registry, load and build on it, serve, create
an endpoint on the local image and get its answer through the gateway.

Only what names this host changes: the README's socket becomes the suite's engine
(``MOORAGE_TEST_DOCKER_HOST``), ``sudo`` is dropped (the commands run as root), the
server's URL and a real flavor id replace ``127.0.0.1:8080`` and the placeholder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
from docker.errors import DockerException, ImageNotFound, NotFound

from tests.conftest import database
from tests.e2e.conftest import docker_host
from tests.support import readme
from tests.support.server import MoorageServer, wait_for

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
README_SOCKET = "unix:///run/moorage-podman.sock"
README_URL = "http://127.0.0.1:8080"
FLAVOR_PLACEHOLDER = "<a flavor_id from the list above>"
IMAGE = "localhost/moorage-python:bookworm"
BUILT_IMAGE = "localhost/my-app:1"
STEP_TIMEOUT_S = 120


def commands() -> list[str]:
    return readme.shell_commands(readme.section("## Containers"))


def one(pattern: str, found: list[str]) -> str:
    matching = [c for c in found if re.search(pattern, c)]
    assert len(matching) == 1, f"README.md's Containers section: {pattern!r} in {found!r}"
    return matching[0]


def here(command: str, engine: str, server: str = README_URL) -> str:
    """The README's command for this host: the suite's engine and server, run as root."""
    command = command.removeprefix("sudo ")
    return command.replace(README_SOCKET, engine).replace(README_URL, server)


def sh(command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Runs a README command in bash; fails with its output when it fails."""
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
    )
    assert done.returncode == 0, f"{command!r} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def engine() -> Iterator[str]:
    url = docker_host()
    if os.geteuid() != 0:
        pytest.skip("the README's container steps run as root (sudo)")
    if shutil.which("curl") is None:
        pytest.skip("the README's API calls use curl, which is not installed")
    yield url
    with engine_client(url) as client:
        for name in (BUILT_IMAGE, IMAGE):
            with contextlib.suppress(DockerException):
                client.images.remove(name, force=True)


@contextlib.contextmanager
def engine_client(url: str) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=url, timeout=STEP_TIMEOUT_S)
    try:
        yield client
    finally:
        client.close()


def is_podman(url: str) -> bool:
    with engine_client(url) as client:
        components = client.version().get("Components") or []
    named = any("podman" in str(c.get("Name", "")).lower() for c in components)
    return named and shutil.which("podman") is not None


def test_engine_step_prints_the_engine_make_serve_uses(engine: str) -> None:
    found = commands()
    step = one(r"container-engine\.sh engine$", found)
    # The suite's engine already answers: the step uses it as it is and says so.
    printed = sh(here(step, engine), REPO, env={"DOCKER_HOST": engine})
    assert printed.splitlines()[-1] == engine
    serve = one(r"make serve$", found)
    assert serve == f"MOORAGE_DOCKER_HOST={README_SOCKET} make serve"


def test_engine_step_starts_podman_where_no_engine_answers(engine: str) -> None:
    """The fresh-host path: no Docker, nothing on the socket; the step starts Podman's
    service there (on a socket of the test's own), prints it, finds it again, and
    ``stop`` ends it."""
    if not is_podman(engine):
        pytest.skip("the suite's engine is not Podman: this host may not have Podman")
    if Path("/var/run/docker.sock").exists():
        pytest.skip("a Docker socket is here: the engine step would use it")
    step = one(r"container-engine\.sh engine$", commands())
    folder = Path(tempfile.mkdtemp(prefix="moorage-readme-", dir="/tmp"))
    socket = folder / "podman.sock"
    env = {"DOCKER_HOST": "", "MOORAGE_PODMAN_SOCKET": str(socket)}
    try:
        printed = sh(here(step, engine), REPO, env=env)
        assert printed.splitlines()[-1] == f"unix://{socket}"
        with engine_client(f"unix://{socket}") as client:
            assert client.ping()
        again = sh(here(step, engine), REPO, env=env)
        assert again.splitlines()[-1] == f"unix://{socket}"
    finally:
        sh("scripts/container-engine.sh stop", REPO, env=env)
        assert not socket.exists()
        with engine_client(engine) as client:
            assert client.ping(), "`stop` stopped only the service `engine` started"
        shutil.rmtree(folder, ignore_errors=True)


def test_an_endpoint_runs_on_an_image_built_without_a_registry(engine: str, tmp_path: Path) -> None:
    found = commands()
    with engine_client(engine) as client:  # built afresh, not found from before
        with contextlib.suppress(NotFound):  # Podman answers NotFound, Docker ImageNotFound
            client.images.remove(IMAGE, force=True)
        with pytest.raises(ImageNotFound):
            client.images.get(IMAGE)

    printed = sh(here(one(r"container-engine\.sh image ", found), engine), REPO)
    assert printed.splitlines()[-1] == IMAGE

    # The load and build steps are Podman's commands; Docker's are named in the prose.
    if is_podman(engine):
        sh(f"podman --url {engine} save -o python.tar {IMAGE}", tmp_path)
        loaded = sh(here(one(r" load -i python\.tar$", found), engine), tmp_path)
        assert IMAGE in loaded
        (tmp_path / "Containerfile").write_text(f"FROM {IMAGE}\nRUN echo built > /built.txt\n")
        sh(here(one(r" build -t ", found), engine), tmp_path)
        ran = sh(f"podman --url {engine} run --rm {BUILT_IMAGE} cat /built.txt", tmp_path)
        assert ran.strip() == "built"

    with database("sqlite", tmp_path) as url:
        server = MoorageServer(
            home=tmp_path / "home", database_url=url, runtime="auto", docker_host=engine
        ).start()
        try:
            answer_through_the_gateway(server, found, engine)
        finally:
            server.stop()


def answer_through_the_gateway(server: MoorageServer, found: list[str], engine: str) -> None:
    token = server.admin_token
    assert token is not None
    headers = {"Authorization": f"Bearer {token}"}
    flavors = requests.get(f"{server.url}/v1/inference-service/flavor", headers=headers).json()
    flavor_id = flavors["flavor_list"][0]["flavor_id"]

    create = here(one(r"-X POST .*/v1/inference-service ", found), engine, server.url)
    assert IMAGE in create
    created = json.loads(
        sh(create.replace(FLAVOR_PLACEHOLDER, flavor_id), REPO, env={"API_TOKEN": token})
    )
    service_id = created["service_id"]

    def available() -> bool:
        service = requests.get(
            f"{server.url}/v1/inference-service/{service_id}", headers=headers, timeout=10
        ).json()
        assert service["status"] not in ("unavailable", "failed"), service
        return bool(service["status"] == "available")

    wait_for(available, timeout=STEP_TIMEOUT_S, what=f"{service_id} to be available")
    call = readme.shell_commands(readme.section("## Quickstart"))
    gateway_call = here(one(r"/inference-api/", call), engine, server.url)
    body = sh(gateway_call, REPO, env={"API_TOKEN": token, "SERVICE_ID": service_id})
    assert "Directory listing for /" in body
    with engine_client(engine) as client:  # a container of the image answered, not a process
        (container,) = client.containers.list(
            filters={"label": f"io.moorage.endpoint={service_id}"}
        )
        assert container.image is not None
        assert IMAGE in container.image.tags
