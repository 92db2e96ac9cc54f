"""A private image pulled with alice's registry login stays alice's: mallory, with no
login, never starts the copy the engine keeps.

No registry is reachable here, so the test makes the private image itself: an image
built locally and tagged ``127.0.0.1:PORT/alice-private:1`` for a port nothing listens
on, and notes it in the server's record of logged-in pulls (``MOORAGE_HOME/docker/
image-pulls.json``) as a pull with alice's login leaves it. Mallory's endpoint must
pull it again without a login, fail with a hint to store her own, and never start a
container of it; alice's own still runs it, and an image the operator loaded, which no
login pulled, still runs for anyone, offline.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import pytest
from docker.errors import DockerException

from moorage.runtimes.image_access import ImagePullRecord
from tests.support.server import ApiClient, MoorageServer, free_port

STORES = ["sqlite"]
RUNTIMES = ["process", "docker"]


@dataclass(frozen=True)
class Images:
    registry: str
    private: str  # on the registry-like name, noted as pulled with alice's login
    private_id: str
    loaded: str  # the operator's, noted nowhere


@dataclass(frozen=True)
class User:
    user_id: str
    api: ApiClient


def _build(client: docker.DockerClient, tag: str) -> str:
    """An image of its own (a label no other has) from the local python:3.10-slim."""
    dockerfile = f"FROM python:3.10-slim\nLABEL io.moorage.test={secrets.token_hex(8)}\n"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = client.images.build(fileobj=context, custom_context=True, tag=tag, pull=False)
    return str(image.id)


@pytest.fixture(scope="module")
def images(server: MoorageServer) -> Iterator[Images]:
    if server.runtime != "docker":
        pytest.skip("the process runtime runs no image")
    assert server.docker_host is not None
    registry = f"127.0.0.1:{free_port()}"  # nothing listens there: no pull can succeed
    private = f"{registry}/alice-private:1"
    loaded = f"localhost/moorage-test-loaded-{secrets.token_hex(4)}:1"
    client = docker.DockerClient(base_url=server.docker_host, timeout=300)
    try:
        private_id = _build(client, private)
        _build(client, loaded)
        yield Images(registry, private, private_id, loaded)
    finally:
        for tag in (private, loaded):
            with contextlib.suppress(DockerException):
                client.images.remove(tag, force=True)
        client.close()


def _user(admin: ApiClient, server: MoorageServer, name: str) -> User:
    created = admin.call("POST", "/v1/users", json={"name": name})
    assert created.status_code == 201, created.text
    user_id = str(created.json()["user_id"])
    token = admin.call("POST", "/v1/tokens", json={"user_id": user_id})
    assert token.status_code == 201, token.text
    return User(user_id, ApiClient(server.url, str(token.json()["token"])))


@pytest.fixture(scope="module")
def alice_and_mallory(server: MoorageServer, admin: ApiClient, images: Images) -> tuple[User, User]:
    alice = _user(admin, server, "alice-private-images")
    mallory = _user(admin, server, "mallory-private-images")
    # What the runtime notes when a pull with alice's login brings the image.
    ImagePullRecord(server.home / "docker" / "image-pulls.json").pulled(
        images.private_id, owner=alice.user_id, with_login=True
    )
    return alice, mallory


def _containers_of(server: MoorageServer, service_id: str) -> list[str]:
    assert server.docker_host is not None
    client = docker.DockerClient(base_url=server.docker_host)
    try:
        found = client.containers.list(
            all=True, filters={"label": f"io.moorage.endpoint={service_id}"}
        )
        return [str(container.name) for container in found]
    finally:
        client.close()


def test_mallory_never_starts_the_copy_alices_login_pulled(
    server: MoorageServer, images: Images, alice_and_mallory: tuple[User, User]
) -> None:
    _, mallory = alice_and_mallory
    created = mallory.api.create(name="borrowed", deploy_metadata={"image_url": images.private})
    service_id = created["service_id"]
    try:
        endpoint = mallory.api.wait_status(service_id, "unavailable", timeout=90)
        info = str(endpoint["status_info"])
        assert f"needs a login to {images.registry}" in info, info
        assert f"PUT /v1/registry-credentials/{images.registry}" in info, info
        assert _containers_of(server, service_id) == [], "a container of it was created"
    finally:
        mallory.api.call("DELETE", f"/v1/inference-service/{service_id}")


def test_alice_still_runs_the_image_her_login_pulled(
    images: Images, alice_and_mallory: tuple[User, User]
) -> None:
    alice, _ = alice_and_mallory
    created = alice.api.create(name="mine", deploy_metadata={"image_url": images.private})
    service_id = created["service_id"]
    try:
        alice.api.wait_status(service_id, "available", timeout=120)
        assert alice.api.gateway(service_id).status_code == 200
    finally:
        alice.api.call("DELETE", f"/v1/inference-service/{service_id}")


def test_an_image_no_login_pulled_runs_for_anyone_offline(
    images: Images, alice_and_mallory: tuple[User, User]
) -> None:
    _, mallory = alice_and_mallory
    created = mallory.api.create(name="loaded", deploy_metadata={"image_url": images.loaded})
    service_id = created["service_id"]
    try:
        mallory.api.wait_status(service_id, "available", timeout=120)
        assert mallory.api.gateway(service_id).status_code == 200
    finally:
        mallory.api.call("DELETE", f"/v1/inference-service/{service_id}")
