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
import contextlib
import gc
import os
import uuid
import warnings
from functools import cache

import docker
import requests
from docker.errors import DockerException, ImageNotFound

ENV_HOST = "MOORAGE_TEST_DOCKER_HOST"
TEST_IMAGE = "python:3.10-slim"
SETUP_SCRIPT = "scripts/container-engine.sh"
SETUP_SOCKET = "unix:///run/moorage-ci-podman.sock"
USUAL_SOCKETS = ("unix:///var/run/docker.sock", "unix:///run/podman/podman.sock")
# Per call: the check runs a container, which takes a while on a loaded machine.
_ENGINE_TIMEOUT_S = 60

HOW_TO_SET_UP = (
    f"run `sudo {SETUP_SCRIPT}` (Podman and the test image) and set {ENV_HOST}={SETUP_SOCKET}"
)


class EngineUnavailable(Exception):
    pass


def _check(url: str) -> str | None:
    """Why the engine at url cannot run the tests; None when it can."""
    with warnings.catch_warnings():
        # The Docker SDK leaks its socket when nothing answers; it is collected here
        # rather than in some later test, where the warning would be an error.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return _check_engine(url)
        finally:
            gc.collect()


def _check_engine(url: str) -> str | None:
    try:
        client = docker.DockerClient(base_url=url, timeout=_ENGINE_TIMEOUT_S)
    except DockerException as exc:
        return f"no container engine answers at {url}: {exc}"
    try:
        return _check_client(client, url)
    finally:
        client.close()


def _check_client(client: docker.DockerClient, url: str) -> str | None:
    try:
        client.ping()
    except DockerException as exc:
        return f"no container engine answers at {url}: {exc}"
    try:
        client.images.get(TEST_IMAGE)
    except ImageNotFound:
        return f"the engine at {url} has no image {TEST_IMAGE}"
    except DockerException as exc:
        return f"the engine at {url} cannot tell whether it has {TEST_IMAGE}: {exc}"
    # The official image of that name has no Flask; the script's image has.
    probe = base64.b64encode(b"import flask\nprint('flask ok')\n").decode()
    name = f"moorage-test-engine-check-{uuid.uuid4().hex[:12]}"
    try:
        output = client.containers.run(
            TEST_IMAGE,
            ["/bin/sh", "-c", f"echo {probe} | base64 -d | python3"],
            name=name,
            remove=True,
            init=True,
        )
    except (DockerException, requests.RequestException) as exc:
        return (
            f"the engine at {url} cannot run a container of {TEST_IMAGE} with python3 and "
            f"Flask (is it the image {SETUP_SCRIPT} builds?): {exc}"
        )
    finally:  # one that failed or timed out half-way is not left behind
        with contextlib.suppress(DockerException, requests.RequestException):
            client.containers.get(name).remove(force=True)
    if b"flask ok" not in output:
        return f"a container of {TEST_IMAGE} at {url} did not run its probe: {output!r}"
    return None


@cache
def _probe() -> str | EngineUnavailable:
    """The engine to test against, or why there is none; probed once per session."""
    for variable in (ENV_HOST, "DOCKER_HOST"):
        url = os.environ.get(variable)
        if url:
            reason = _check(url)
            if reason is None:
                return url
            return EngineUnavailable(f"{reason} (from {variable}); {HOW_TO_SET_UP}")
    reasons = []
    for url in USUAL_SOCKETS:
        reason = _check(url)
        if reason is None:
            return url
        reasons.append(reason)
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
