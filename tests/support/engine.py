"""A real container engine for the docker runtime tests.

``.ci/run`` sets one up with ``scripts/container-engine.sh`` (Podman's
Docker-compatible service, and the test image built with debootstrap) and exports
``MOORAGE_TEST_DOCKER_HOST``. Without it, tests use ``DOCKER_HOST``, or a Docker
or Podman socket at its usual place, when the engine there has the test image.
Whatever is found is checked once per session: the engine answers a ping, has
``TEST_IMAGE``, and runs a container of it with python3 and Flask.
"""

from __future__ import annotations

import base64
import os
from functools import cache

import docker
from docker.errors import DockerException, ImageNotFound

ENV_HOST = "MOORAGE_TEST_DOCKER_HOST"
TEST_IMAGE = "python:3.10-slim"
SETUP_SCRIPT = "scripts/container-engine.sh"
SETUP_SOCKET = "unix:///run/moorage-ci-podman.sock"
USUAL_SOCKETS = ("unix:///var/run/docker.sock", "unix:///run/podman/podman.sock")
_PING_TIMEOUT_S = 10

HOW_TO_SET_UP = (
    f"run `sudo {SETUP_SCRIPT}` (Podman and the test image) and set {ENV_HOST}={SETUP_SOCKET}"
)


class EngineUnavailable(Exception):
    pass


def _check(url: str) -> None:
    """Raises EngineUnavailable unless the engine at url answers and can run the tests."""
    try:
        client = docker.DockerClient(base_url=url, timeout=_PING_TIMEOUT_S)
    except DockerException as exc:
        raise EngineUnavailable(f"{url} is not a container engine address: {exc}") from exc
    try:
        try:
            client.ping()
        except DockerException as exc:
            raise EngineUnavailable(f"no container engine answers at {url}: {exc}") from exc
        try:
            client.images.get(TEST_IMAGE)
        except ImageNotFound as exc:
            raise EngineUnavailable(f"the engine at {url} has no image {TEST_IMAGE}") from exc
        # The official image of that name has no Flask; the script's image has.
        probe = base64.b64encode(b"import flask\nprint('flask ok')\n").decode()
        try:
            output = client.containers.run(
                TEST_IMAGE,
                ["/bin/sh", "-c", f"echo {probe} | base64 -d | python3"],
                remove=True,
                init=True,
            )
        except DockerException as exc:
            raise EngineUnavailable(
                f"the engine at {url} cannot run a container of {TEST_IMAGE} with python3 "
                f"and Flask (is it the image {SETUP_SCRIPT} builds?): {exc}"
            ) from exc
        if b"flask ok" not in output:
            raise EngineUnavailable(
                f"a container of {TEST_IMAGE} at {url} did not run its probe: {output!r}"
            )
    finally:
        client.close()


@cache
def _probe() -> str | EngineUnavailable:
    """The engine to test against, or why there is none; probed once per session."""
    for variable in (ENV_HOST, "DOCKER_HOST"):
        url = os.environ.get(variable)
        if url:
            try:
                _check(url)
            except EngineUnavailable as exc:
                return EngineUnavailable(f"{exc} (from {variable}); {HOW_TO_SET_UP}")
            return url
    reasons = []
    for url in USUAL_SOCKETS:
        try:
            _check(url)
        except EngineUnavailable as exc:
            reasons.append(str(exc))
        else:
            return url
    return EngineUnavailable(
        f"{ENV_HOST} and DOCKER_HOST are unset and no usual socket will do "
        f"({'; '.join(reasons)}); {HOW_TO_SET_UP}"
    )


def engine_url() -> str:
    """The container engine's base URL; raises EngineUnavailable with what to do."""
    found = _probe()
    if isinstance(found, EngineUnavailable):
        raise EngineUnavailable(str(found))
    return found
