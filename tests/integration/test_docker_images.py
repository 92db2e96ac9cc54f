"""Images on the docker runtime, on a real engine: a digest-pinned image runs, and a
pull under way ends when the runtime closes instead of outliving it.

Podman reports a repository digest (``RepoDigests``) for the locally built test
image, so ``<repository>@sha256:<digest>`` names it without a registry.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator

import httpx
import pytest

from moorage.models.endpoints import DeploySpec
from moorage.runtimes.base import Launch, StartPending
from moorage.runtimes.docker import DockerRuntime
from moorage.wire import new_id
from tests.support.engine import TEST_IMAGE
from tests.support.runtimes import observe_until

pytestmark = pytest.mark.anyio

WAIT_S = 30.0


def _launch(image: str) -> Launch:
    return Launch(
        replica_id=new_id(),
        endpoint_id=new_id(),
        revision=1,
        deploy=DeploySpec(image_url=image, command="python3 -m http.server $PORT", port=8080),
    )


@pytest.fixture
def silent_registry() -> Iterator[str]:
    """``host:port`` of a registry that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


async def test_a_digest_pinned_image_runs(docker_runtime: DockerRuntime) -> None:
    digests = docker_runtime.client.images.get(TEST_IMAGE).attrs.get("RepoDigests") or []
    if not digests:
        pytest.skip(f"the engine reports no repository digest for {TEST_IMAGE}")
    pinned = digests[0]
    assert "@sha256:" in pinned
    launch = _launch(pinned)

    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            address = await docker_runtime.start(launch)
            break
        except StartPending:
            assert time.monotonic() < deadline, f"{pinned} was still pulling after {WAIT_S} s"
            await asyncio.sleep(0.2)

    await observe_until(
        docker_runtime,
        launch.replica_id,
        lambda o: o is not None and o.running,
        "ran",
        timeout_s=WAIT_S,
    )
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
        while True:
            try:
                answer = await client.get(f"http://{address}/")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"the replica of {pinned} never answered"
                await asyncio.sleep(0.2)
    assert answer.status_code == 200
    await docker_runtime.stop(launch.replica_id)


async def test_close_ends_a_pull_the_engine_is_stuck_on(
    docker_runtime: DockerRuntime, silent_registry: str
) -> None:
    daemons_before = _daemon_threads()
    image = f"{silent_registry}/moorage-tests/stuck@sha256:{'a' * 64}"
    with pytest.raises(StartPending, match="pulling"):
        await docker_runtime.start(_launch(image))
    await asyncio.sleep(0.5)  # the engine is now waiting on the silent registry
    assert _threads_in("_pull"), "no thread reads the pull's progress"
    assert _daemon_threads() == daemons_before, "the pull runs in a daemon thread"

    await asyncio.wait_for(docker_runtime.close(), timeout=10)
    assert not _threads_in("_pull"), "a thread still reads the pull after close()"


def _daemon_threads() -> set[int]:
    return {t.ident or 0 for t in threading.enumerate() if t.daemon and t.is_alive()}


def _threads_in(function: str) -> list[int]:
    """Threads whose stack is inside ``docker_images.<function>`` right now."""
    found = []
    for ident, frame in sys._current_frames().items():
        stack = traceback.extract_stack(frame)
        if any(f.name == function and f.filename.endswith("docker_images.py") for f in stack):
            found.append(ident)
    return found
