"""The docker runtime with real containers: what only it does (networks, labels,
signals through the container's init, images, GPUs), on a real engine (Podman's
Docker API in CI). What every runtime does is in ``test_runtime_contract.py``.

Each replica runs a small Flask app shipped inline in its command. Every wait is
bounded; the ``docker_runtime`` fixture removes whatever a test left, and fails
the test if a container was still running.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from docker.models.containers import Container, ContainerCollection

from moorage.models.endpoints import DeploySpec
from moorage.runtimes.base import Launch, StartError, StartPending
from moorage.runtimes.docker import LABEL, DockerRuntime
from moorage.runtimes.listening import Listening
from moorage.runtimes.ports import free_port
from moorage.wire import new_id
from tests.support.engine import TEST_IMAGE
from tests.support.runtimes import follow, refuses, request_until_answered

pytestmark = pytest.mark.anyio

WAIT_S = 20.0
CONTAINER_PORT = 8080

APP_SOURCE = """\
import logging, os, signal, threading, time
from flask import Flask, request

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request lines in the output

def emit(text, fd=1):
    # One write per call, newline included: Podman before 4.7 garbles `logs --tail`
    # around a line whose newline came in a write of its own (podman#19545).
    os.write(fd, (text + "\\n").encode())

def _polite(signum, frame):
    emit("terminated politely")
    time.sleep(0.5)  # lingers, so that a log follower reads the line before the end
    os._exit(0)

if os.environ.get("APP_ON_SIGTERM") == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, _polite)

app = Flask("replica")

@app.get("/")
def index():
    return {"pid": os.getpid(), "env": dict(os.environ)}

@app.post("/say")
def say():
    emit(request.get_data(as_text=True))
    return "said"

@app.post("/exit/<int:code>")
def exit_(code):
    emit(request.get_data(as_text=True), fd=2)
    threading.Timer(0.2, os._exit, (code,)).start()
    return "exiting"

emit(f"replica app listening on {os.environ['PORT']}")
app.run(host="0.0.0.0", port=int(os.environ["PORT"]))
"""
LISTENING = f"replica app listening on {CONTAINER_PORT}"
_SHIP_APP = f"echo {base64.b64encode(APP_SOURCE.encode()).decode()} | base64 -d > /tmp/app.py"
# What users write: the app behind `&&`, so `sh` stays its parent.
SERVE = f"{_SHIP_APP} && python3 /tmp/app.py"
# The app replaces the shell, so the container's init is its parent.
SERVE_EXEC = f"{_SHIP_APP} && exec python3 /tmp/app.py"


def _launch(
    command: str = SERVE,
    *,
    image: str = TEST_IMAGE,
    env: Mapping[str, str] | None = None,
    gpu_num: int = 0,
) -> Launch:
    return Launch(
        replica_id=new_id(),
        endpoint_id=new_id(),
        revision=2,
        deploy=DeploySpec(
            image_url=image,
            command=command,
            port=CONTAINER_PORT,
            gpu_num=gpu_num,
            env=dict(env or {}),
        ),
    )


def _containers(runtime: DockerRuntime, replica_id: str) -> list[Container]:
    """Every container of the replica on the engine, running or not, whoever made it."""
    return list(
        runtime.client.containers.list(
            all=True, filters={"label": f"{LABEL}.replica={replica_id}"}, ignore_removed=True
        )
    )


async def _get(address: str) -> dict[str, Any]:
    body: dict[str, Any] = (await request_until_answered("GET", address)).json()
    return body


async def _timed(action: Callable[[], Awaitable[None]]) -> float:
    started = time.monotonic()
    await action()
    return time.monotonic() - started


async def _start_and_wait(runtime: DockerRuntime, launch: Launch) -> tuple[str, dict[str, Any]]:
    address = await runtime.start(launch)
    return address, await _get(address)


# -- start, environment, labels ------------------------------------------------


async def test_each_endpoint_gets_a_network_of_its_own_removed_with_its_last_container(
    docker_runtime: DockerRuntime,
) -> None:
    first, second = _launch(), _launch()
    await docker_runtime.start(first)
    await docker_runtime.start(second)
    if docker_runtime.own_namespace_only():  # Podman before 4.5: no bridge at all
        for launch in (first, second):
            (container,) = _containers(docker_runtime, launch.replica_id)
            assert container.attrs["HostConfig"]["NetworkMode"] == "slirp4netns"
            assert not any(
                n.name == docker_runtime.network_name(launch.endpoint_id)
                for n in docker_runtime.client.networks.list()
            )
        await docker_runtime.stop(first.replica_id)
        await docker_runtime.stop(second.replica_id)
        return
    networks = {}
    for launch in (first, second):
        (container,) = _containers(docker_runtime, launch.replica_id)
        attached = set(container.attrs["NetworkSettings"]["Networks"])
        assert attached == {docker_runtime.network_name(launch.endpoint_id)}, attached
        network = docker_runtime.client.networks.get(
            docker_runtime.network_name(launch.endpoint_id)
        )
        assert network.attrs["Labels"][f"{LABEL}.endpoint"] == launch.endpoint_id
        assert network.attrs["Labels"][f"{LABEL}.installation"] == docker_runtime.installation
        networks[launch.endpoint_id] = network.name
    assert len(set(networks.values())) == 2

    await docker_runtime.stop(first.replica_id)
    remaining = {n.name for n in docker_runtime.client.networks.list()}
    assert networks[first.endpoint_id] not in remaining
    assert networks[second.endpoint_id] in remaining
    await docker_runtime.stop(second.replica_id)
    assert networks[second.endpoint_id] not in {
        n.name for n in docker_runtime.client.networks.list()
    }


async def test_the_container_carries_the_labels_a_restarted_moorage_needs(
    docker_runtime: DockerRuntime,
) -> None:
    launch = _launch()
    address = await docker_runtime.start(launch)

    [container] = _containers(docker_runtime, launch.replica_id)
    labels = container.labels

    assert labels[f"{LABEL}.installation"] == docker_runtime.installation
    assert labels[f"{LABEL}.endpoint"] == launch.endpoint_id
    assert labels[f"{LABEL}.replica"] == launch.replica_id
    assert labels[f"{LABEL}.revision"] == "2"
    assert f"127.0.0.1:{labels[f'{LABEL}.host-port']}" == address
    observed = (await docker_runtime.observe())[launch.replica_id]
    assert {k: v for k, v in observed.labels.items() if k.startswith(LABEL)} == {
        k: v for k, v in labels.items() if k.startswith(LABEL)
    }
    await docker_runtime.stop(launch.replica_id)


# -- exit ----------------------------------------------------------------------


# -- stop ----------------------------------------------------------------------


async def test_stop_asks_the_app_politely_and_does_not_wait_out_the_grace(
    docker_runtime: DockerRuntime,
) -> None:
    patient = DockerRuntime(
        docker_runtime.client, installation=docker_runtime.installation, stop_grace_s=30
    )
    launch = _launch(SERVE_EXEC)
    address, _ = await _start_and_wait(patient, launch)

    async with follow(patient, launch.replica_id, tail=None) as follower:
        await follower.wait_for(LISTENING)  # following for sure before the stop
        elapsed = await _timed(lambda: patient.stop(launch.replica_id))
        assert await follower.ended(), "following the logs did not end with the container"

    assert "terminated politely" in follower.text, "the app never saw SIGTERM"
    assert elapsed < 5, f"stop took {elapsed:.2f} s for an app that exits on SIGTERM"
    assert _containers(docker_runtime, launch.replica_id) == []
    assert await refuses(address)


async def test_stop_asks_politely_an_app_that_is_not_the_shells_last_exec(
    docker_runtime: DockerRuntime,
) -> None:
    patient = DockerRuntime(
        docker_runtime.client, installation=docker_runtime.installation, stop_grace_s=30
    )
    launch = _launch(SERVE)
    await _start_and_wait(patient, launch)

    async with follow(patient, launch.replica_id, tail=None) as follower:
        await follower.wait_for(LISTENING)
        await patient.stop(launch.replica_id)
        assert await follower.ended()

    assert "terminated politely" in follower.text, "the app never saw SIGTERM"


async def test_a_container_that_ignores_sigterm_is_killed_after_the_grace(
    docker_runtime: DockerRuntime,
) -> None:
    grace = docker_runtime.stop_grace_s
    launch = _launch(SERVE_EXEC, env={"APP_ON_SIGTERM": "ignore"})
    address, _ = await _start_and_wait(docker_runtime, launch)

    elapsed = await _timed(lambda: docker_runtime.stop(launch.replica_id))

    assert elapsed >= grace - 0.2, f"stop took {elapsed:.2f} s: SIGKILL came before the grace"
    assert elapsed < grace + 5, f"stop took {elapsed:.2f} s"
    assert _containers(docker_runtime, launch.replica_id) == []
    assert await refuses(address)


# -- adoption and installations --------------------------------------------------


async def test_observe_survives_a_container_removed_while_it_looks(
    docker_runtime: DockerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    staying, going = _launch("sleep 300"), _launch("sleep 300")
    await docker_runtime.start(staying)
    await docker_runtime.start(going)
    [going_container] = _containers(docker_runtime, going.replica_id)
    api = docker_runtime.client.api
    list_containers = api.containers

    def list_then_remove_one(*args: Any, **kwargs: Any) -> Any:
        """The engine's list, and then a concurrent stop() removing one listed container."""
        listed = list_containers(*args, **kwargs)
        monkeypatch.setattr(api, "containers", list_containers)
        api.remove_container(str(going_container.id), force=True)
        return listed

    monkeypatch.setattr(api, "containers", list_then_remove_one)

    try:
        observed = await docker_runtime.observe()
    finally:
        await docker_runtime.stop(staying.replica_id)

    assert observed[staying.replica_id].running is True


# -- images and GPUs -----------------------------------------------------------


async def test_a_missing_image_is_pending_while_pulled_then_an_error_naming_it(
    docker_runtime: DockerRuntime,
) -> None:
    # A registry nobody listens on: the pull fails the same way everywhere.
    image = f"127.0.0.1:{free_port()}/moorage-tests/no-such-image:{new_id()[:8]}"
    launch = _launch(image=image)

    with pytest.raises(StartPending, match=r"pulling") as pending:
        await docker_runtime.start(launch)
    assert image in pending.value.progress

    deadline = time.monotonic() + 60
    while True:
        try:
            await docker_runtime.start(launch)
        except StartPending:
            assert time.monotonic() < deadline, "the pull of a missing image never ended"
            await asyncio.sleep(0.2)
            continue
        except StartError as exc:
            message = str(exc)
            break
        raise AssertionError(f"a replica of the missing image {image} started")

    assert image in message
    assert "deploy_metadata.image_url" in message
    assert await docker_runtime.observe() == {}
    assert _containers(docker_runtime, launch.replica_id) == []


async def test_a_gpu_request_is_refused_naming_gpu_num(docker_runtime: DockerRuntime) -> None:
    runtimes = docker_runtime.client.info().get("Runtimes") or {}
    if "nvidia" in runtimes:
        pytest.skip("this engine has the NVIDIA runtime: it may well grant the GPU")

    with pytest.raises(StartError, match=r"gpu_num") as caught:
        await docker_runtime.start(_launch(gpu_num=1))

    assert "gpu_num 0" in str(caught.value)
    assert await docker_runtime.observe() == {}, "the refused replica left a container"


async def test_a_replica_given_gpus_asks_the_engine_for_those_gpus_by_uuid(
    docker_runtime: DockerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[Any] = []
    create = ContainerCollection.create

    def spy(self: ContainerCollection, *args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("device_requests"))
        return create(self, *args, **kwargs)

    monkeypatch.setattr(ContainerCollection, "create", spy)
    launch = dataclasses.replace(_launch(gpu_num=2), gpus=("GPU-aaa", "GPU-bbb"))

    with contextlib.suppress(StartError):  # an engine without GPUs refuses it, as above
        await docker_runtime.start(launch)
    await docker_runtime.stop(launch.replica_id)

    ((request,),) = asked
    assert request["DeviceIDs"] == ["GPU-aaa", "GPU-bbb"]
    assert not request.get("Count"), "those GPUs, not any two"


# -- logs ----------------------------------------------------------------------


# -- start-up ------------------------------------------------------------------


async def test_the_ports_a_container_listens_on_are_read_beside_its_port(
    docker_runtime: DockerRuntime,
) -> None:
    """An app on a fixed port instead of $PORT: the container's own /proc shows it."""
    launch = _launch("exec python3 -m http.server 18080 --bind 0.0.0.0")
    await docker_runtime.start(launch)

    async def seen() -> Listening | None:
        found = await docker_runtime.listening(launch.replica_id)
        return found if found is not None and found.ports else None

    deadline = time.monotonic() + 30
    found = await seen()
    while found is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        found = await seen()
    await docker_runtime.stop(launch.replica_id)

    assert found == Listening(CONTAINER_PORT, (18080,))
    assert await docker_runtime.listening(launch.replica_id) is None


async def test_a_port_the_container_listens_on_at_loopback_alone_is_named_unreachable(
    docker_runtime: DockerRuntime,
) -> None:
    """Nothing outside the container's network namespace reaches 127.0.0.1 in it."""
    launch = _launch(f"exec python3 -m http.server {CONTAINER_PORT} --bind 127.0.0.1")
    await docker_runtime.start(launch)
    try:
        deadline = time.monotonic() + 30
        found = await docker_runtime.listening(launch.replica_id)
        while (found is None or not found.ports) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            found = await docker_runtime.listening(launch.replica_id)
    finally:
        await docker_runtime.stop(launch.replica_id)

    assert found == Listening(CONTAINER_PORT, (CONTAINER_PORT,), (f"127.0.0.1:{CONTAINER_PORT}",))
