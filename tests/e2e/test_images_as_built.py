"""Model servers run as their images are built: no ``command`` (the image's entrypoint
with ``args``), a named volume that outlives its replicas, a secret (in the replica's
environment, nowhere else) and ``shm_size_mb``.

On the docker runtime the test builds, from the local ``python:3.10-slim``, an image
whose ENTRYPOINT is the app (no registry is reachable); on the process runtime, which
runs a command, not an image, the same app runs sandboxed as alice's command.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import tarfile
from typing import Any

import docker
import pytest

from tests.support.server import ApiClient, MoorageServer, inline_app_command, wait_for

RUNTIMES = ["process", "docker"]
STORES = ["sqlite"]
IMAGE = "moorage-test-entrypoint:1"
VOLUME_PATH = "/mnt/weights"
SHM_MB = 96

# Reports what it was started with, keeps a diary in the volume (its start, and a
# SIGTERM when it gets one), and says how big /dev/shm is.
APP = """
import hashlib, json, os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

DIARY = os.path.join(os.environ["VOLUME"], "diary")
ME = os.environ["MOORAGE_REPLICA_ID"]
with open(DIARY, "a") as diary:
    diary.write(f"start {ME}\\n")


def on_term(*_):
    with open(DIARY, "a") as diary:
        diary.write(f"sigterm {ME}\\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        shm = os.statvfs("/dev/shm")
        token = os.environ.get("HF_TOKEN", "")
        body = json.dumps({
            "argv": sys.argv[1:],
            "hf_token_sha256": hashlib.sha256(token.encode()).hexdigest(),
            "shm_bytes": shm.f_blocks * shm.f_frsize,
            "diary": open(DIARY).read().split("\\n"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


def _build_image(docker_host: str) -> None:
    """The app baked into an image with an ENTRYPOINT and a default CMD."""
    dockerfile = (
        "FROM python:3.10-slim\n"
        "COPY app.py /app.py\n"
        'ENTRYPOINT ["python3", "/app.py"]\n'
        'CMD ["--from-the-image-cmd"]\n'
    )
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in (("Dockerfile", dockerfile), ("app.py", APP)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client = docker.DockerClient(base_url=docker_host, timeout=300)
    try:
        client.images.build(fileobj=context, custom_context=True, tag=IMAGE, pull=False)
    finally:
        client.close()


def _deploy(server: MoorageServer) -> dict[str, Any]:
    common: dict[str, Any] = {
        "env": {"VOLUME": VOLUME_PATH},
        "volumes": [{"name": "weights", "mount_path": VOLUME_PATH}],
        "shm_size_mb": SHM_MB,
        "secrets": ["HF_TOKEN"],
    }
    if server.runtime == "docker":
        assert server.docker_host is not None
        _build_image(server.docker_host)
        return {"image_url": IMAGE, "command": None, "args": ["--model", "tiny"], **common}
    return {"command": inline_app_command(APP) + " --model tiny", **common}


def _report(client: ApiClient, service_id: str) -> dict[str, Any]:
    # Polled: right after a start the gateway has answered 503 no_ready_replica once
    # while GET already read available (seen on the docker runtime under load).
    response = wait_for(
        lambda: (answer := client.gateway(service_id)).status_code == 200 and answer,
        timeout=30,
        what="the app's report through the gateway",
    )
    return dict(response.json())


def _store_token(client: ApiClient) -> str:
    value = "hf_" + secrets.token_hex(16)
    stored = client.call("PUT", "/v1/secrets/HF_TOKEN", json={"value": value})
    assert stored.status_code == 200, stored.text
    return value


def test_the_image_runs_as_built_with_args_a_volume_a_secret_and_shm(
    server: MoorageServer, alice: ApiClient
) -> None:
    token = _store_token(alice)
    created = alice.create(name="as-built", deploy_metadata=_deploy(server))
    service_id = created["service_id"]
    assert created["deploy_metadata"]["secrets"] == ["HF_TOKEN"]
    assert created["deploy_metadata"]["shm_size_mb"] == SHM_MB
    assert created["deploy_metadata"]["volumes"] == [{"name": "weights", "mount_path": VOLUME_PATH}]
    alice.wait_status(service_id, "available", timeout=120)

    report = _report(alice, service_id)
    assert report["argv"] == ["--model", "tiny"], "args replace the image's CMD"
    assert report["hf_token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    seen = [
        alice.call("GET", f"/v1/inference-service/{service_id}").text,
        alice.call("GET", f"/v1/inference-service/{service_id}/events").text,
        alice.call("GET", f"/v1/inference-service/{service_id}/logs").text,
        server.log(),
    ]
    assert not [text for text in seen if token in text], "the secret's value is shown"
    assert report["shm_bytes"] == SHM_MB * 1024 * 1024
    first = report["diary"][0]
    assert first.startswith("start "), report["diary"]

    assert alice.call("POST", f"/v1/inference-service/{service_id}/stop").status_code == 200
    alice.wait_status(service_id, "stopped", timeout=60)
    assert alice.call("POST", f"/v1/inference-service/{service_id}/start").status_code == 200
    alice.wait_status(service_id, "available", timeout=120)

    diary = _report(alice, service_id)["diary"]
    # The first replica's start and its graceful stop (SIGTERM reached the app, with no
    # supervisor shell in the container) are in the volume the next replica mounts.
    first_id = first.removeprefix("start ")
    assert diary[:2] == [first, f"sigterm {first_id}"], diary
    assert diary[2].startswith("start "), diary
    assert diary[2] != first, "the next replica is another one"
    alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_another_users_volume_of_the_same_name_is_another_volume(
    server: MoorageServer, bob: ApiClient
) -> None:
    _store_token(bob)
    created = bob.create(name="bobs", deploy_metadata=_deploy(server))
    service_id = created["service_id"]
    bob.wait_status(service_id, "available", timeout=120)

    diary = _report(bob, service_id)["diary"]
    assert len(diary) == 2, f"alice's diary is not bob's: {diary}"
    assert diary[0].startswith("start "), diary
    bob.call("DELETE", f"/v1/inference-service/{service_id}")


def test_the_process_runtime_asks_for_a_command(server: MoorageServer, alice: ApiClient) -> None:
    if server.runtime != "process":
        pytest.skip("the docker runtime runs images without a command")
    response = alice.call(
        "POST",
        "/v1/inference-service",
        json={
            "name": "no-command",
            "resource_metadata": {"flavor_id": alice.flavor_id()},
            "deploy_metadata": {"image_url": "python:3.10-slim", "port": 8080},
        },
    )
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert message.startswith("deploy_metadata.command: is required"), message
    assert "process runtime runs a command" in message


def test_the_admins_unsandboxed_replicas_refuse_volumes(
    server: MoorageServer, admin: ApiClient
) -> None:
    if server.runtime != "process":
        pytest.skip("every container mounts its volumes")
    response = admin.call(
        "POST",
        "/v1/inference-service",
        json={
            "name": "admin-volume",
            "resource_metadata": {"flavor_id": admin.flavor_id()},
            "deploy_metadata": {
                "image_url": "python:3.10-slim",
                "command": "sleep 1000",
                "port": 8080,
                "volumes": [{"name": "weights", "mount_path": VOLUME_PATH}],
            },
        },
    )
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("deploy_metadata.volumes: cannot be mounted")


def test_args_with_a_command_are_refused_naming_args(alice: ApiClient) -> None:
    response = alice.call(
        "POST",
        "/v1/inference-service",
        json={
            "name": "args-and-command",
            "resource_metadata": {"flavor_id": alice.flavor_id()},
            "deploy_metadata": {
                "image_url": "python:3.10-slim",
                "command": "sleep 1000",
                "args": ["--model", "x"],
                "port": 8080,
            },
        },
    )
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert message.startswith("deploy_metadata.args: passes arguments"), message
