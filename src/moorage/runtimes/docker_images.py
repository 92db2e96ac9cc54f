"""Images for the docker runtime: pulled in the background, cancellable, parsed by docker-py.

A replica whose image is missing does not wait in the reconcile pass: its start
raises ``StartPending`` with the pull's progress, and the pull goes on as an
asyncio task. The blocking Docker SDK reads the engine's progress stream in a
worker thread; ``close()`` shuts that stream's socket, so every pull ends at
shutdown instead of outliving it in a daemon thread.

Image references are split by docker-py (``parse_repository_tag``), so
``python@sha256:<digest>`` is pulled by digest, ``registry:5000/app`` keeps its
port and a reference with neither tag nor digest means ``latest``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import docker
import requests
from docker.auth import encode_header, get_config_header, resolve_repository_name
from docker.errors import APIError, DockerException, ImageNotFound
from docker.types import CancellableStream
from docker.utils import parse_repository_tag

from moorage.runtimes.base import StartError, StartPending

# Silence from the engine this long ends a pull with an error; the engine reports
# progress several times a second while it downloads.
PULL_READ_TIMEOUT_S = 300.0
_CONNECT_TIMEOUT_S = 30.0


def registry_of(image: str) -> str:
    """The registry an image is pulled from, as credentials name it: ``ghcr.io``,
    ``registry:5000``, ``docker.io`` for ``python:3.10-slim``."""
    repository, _ = parse_repository_tag(image)
    registry, _ = resolve_repository_name(repository)
    return str(registry)


def pull_reference(image: str) -> tuple[str, str]:
    """``(repository, tag or digest)`` as the engine's pull API takes them."""
    repository, tag = parse_repository_tag(image)
    return repository, tag or "latest"


@dataclass
class Pull:
    """One image pull in the background, and how far it has come."""

    image: str
    # The owner's credentials for the image's registry (``X-Registry-Auth``), if any.
    auth: Mapping[str, str] | None = field(default=None, repr=False)
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)
    done: bool = False
    error: str | None = None
    # Read by the pulling thread between messages; set by close().
    stopped: bool = False
    stream: CancellableStream[bytes] | None = None
    response: requests.Response | None = None
    task: asyncio.Task[None] | None = None

    def percent(self) -> int:
        current = sum(c for c, _ in self.layers.values())
        total = sum(t for _, t in self.layers.values())
        return int(100 * current / total) if total else 0

    def stop(self) -> None:
        self.stopped = True
        if self.stream is not None:
            with contextlib.suppress(Exception):  # already closed, or never opened
                self.stream.close()


class ImagePuller:
    """Makes sure an image is present before a replica of it starts."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        # By image and, for a pull with a user's credentials, that user: one user's
        # pull never goes out with another's credentials.
        self._pulls: dict[tuple[str, str], Pull] = {}

    async def ensure(
        self, image: str, *, auth: Mapping[str, str] | None = None, owner: str = ""
    ) -> None:
        """Returns when ``image`` is present; raises ``StartPending`` while it is
        pulled and ``StartError`` once a pull failed (the next call pulls again).
        With ``auth`` (the owner's credentials for its registry) the image is pulled
        even when present, so the registry checks those credentials each time."""
        key = (image, owner if auth is not None else "")
        pull = self._pulls.get(key)
        if pull is None:
            if auth is None and await asyncio.to_thread(self._has_image, image):
                return
            pull = self._pulls[key] = Pull(image, auth=auth)
            pull.task = asyncio.create_task(asyncio.to_thread(self._pull, pull))
        if not pull.done:
            raise StartPending(f"pulling {image}: {pull.percent()}%")
        del self._pulls[key]
        if pull.error is not None:
            raise StartError(
                f"cannot pull image {image!r}: {pull.error}; check deploy_metadata.image_url "
                "and that the engine can reach its registry"
            )

    async def close(self) -> None:
        """Stops every pull under way and waits for its thread to end."""
        pulls = list(self._pulls.values())
        self._pulls.clear()
        for pull in pulls:
            pull.stop()
        tasks = [pull.task for pull in pulls if pull.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _has_image(self, image: str) -> bool:
        try:
            self.client.images.get(image)
        except ImageNotFound:
            return False
        return True

    def _pull(self, pull: Pull) -> None:
        try:
            for message in self._messages(pull):
                if pull.stopped:
                    break
                if "error" in message:
                    pull.error = str(message["error"])
                    break
                detail = message.get("progressDetail") or {}
                if message.get("id") and detail.get("total"):
                    pull.layers[message["id"]] = (int(detail["current"]), int(detail["total"]))
        except APIError as exc:
            pull.error = str(exc.explanation or exc)
        except (DockerException, requests.exceptions.RequestException) as exc:
            # A silent engine ends here too: requests reports the read timeout as
            # a ConnectionError once the body has begun.
            pull.error = f"{exc} (the engine may have said nothing for {PULL_READ_TIMEOUT_S:g} s)"
        finally:
            if pull.stopped:
                pull.error = "moorage stopped before the pull ended"
            if pull.stream is not None:
                with contextlib.suppress(Exception):
                    pull.stream.close()
            if pull.response is not None:
                pull.response.close()
            pull.done = True

    def _messages(self, pull: Pull) -> Iterator[dict[str, Any]]:
        """The engine's progress messages, from a stream ``Pull.stop`` can cut.

        docker-py's own ``pull`` hides its response (nothing could close it from
        another thread) and waits forever on a silent engine, so the request is
        made here with its parameters and a read timeout.
        """
        api = self.client.api
        repository, tag = pull_reference(pull.image)
        registry, _ = resolve_repository_name(repository)
        auth = encode_header(dict(pull.auth)) if pull.auth else get_config_header(api, registry)
        response = api.post(
            f"{api.base_url}/v{api.api_version}/images/create",
            params={"fromImage": repository, "tag": tag},
            headers={"X-Registry-Auth": auth} if auth else {},
            stream=True,
            timeout=(_CONNECT_TIMEOUT_S, PULL_READ_TIMEOUT_S),
        )
        if response.status_code >= 400:
            explanation = response.text.strip()
            with contextlib.suppress(ValueError, KeyError, TypeError):
                explanation = str(response.json()["message"])
            response.close()
            raise APIError(f"{response.status_code} from the engine", explanation=explanation)
        pull.response = response
        pull.stream = CancellableStream(response.iter_lines(), response)
        if pull.stopped:  # stopped while the request was on its way
            return
        for line in pull.stream:
            if line.strip():
                yield json.loads(line)
