"""Images for the docker runtime: pulled in the background, cancellable, parsed by docker-py.

A replica whose image is missing does not wait in the reconcile pass: its start
raises ``StartPending`` with the pull's progress, and the pull goes on as an
asyncio task. The blocking Docker SDK reads the engine's progress stream in a
worker thread; ``close()`` shuts that stream's socket, so every pull ends at
shutdown instead of outliving it in a daemon thread.

Image references are split by docker-py (``parse_repository_tag``), so
``python@sha256:<digest>`` is pulled by digest, ``registry:5000/app`` keeps its
port and a reference with neither tag nor digest means ``latest``.

A pull made with a user's registry login is noted by image id (``image_access.py``):
another owner's replica pulls that image again, with their own login or none, before
it may start it, and a replica starts from the image id its check allowed, never
from a tag that may have moved since.
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

from moorage.models.images import image_reference_problem
from moorage.runtimes.base import StartError, StartPending
from moorage.runtimes.image_access import ImagePullRecord, RecordError

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
    owner: str = ""
    # The id the reference named on the engine before the pull, if any.
    id_before: str | None = None
    # Pulled again because a pull with another user's login brought the local copy.
    for_another_login: bool = False
    # The id the reference names once the pull ended: what the replica starts.
    image_id: str | None = None
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

    def __init__(self, client: docker.DockerClient, record: ImagePullRecord | None = None) -> None:
        self.client = client
        self.record = record if record is not None else ImagePullRecord()
        # By image and, for a pull with a user's credentials, that user: one user's
        # pull never goes out with another's credentials.
        self._pulls: dict[tuple[str, str], Pull] = {}

    async def ensure(
        self, image: str, *, auth: Mapping[str, str] | None = None, owner: str = ""
    ) -> str:
        """The id of ``image`` on the engine that ``owner``'s replica may start; raises
        ``StartPending`` while it is pulled and ``StartError`` once a pull failed (the
        next call pulls again). With ``auth`` (the owner's credentials for its
        registry) the image is pulled even when present, so the registry checks those
        credentials each time. Without, a present image is used as it is unless a pull
        with another user's login brought it: then it is pulled again without one."""
        problem = image_reference_problem(image)
        if problem is not None:  # what an older moorage stored: never into an API path
            raise StartError(f"deploy_metadata.image_url {problem}")
        key = (image, owner if auth is not None else "")
        pull = self._pulls.get(key)
        if pull is None:
            local = await asyncio.to_thread(self._image_id, image)
            if (
                auth is None
                and local is not None
                and await asyncio.to_thread(self._may_start, local, owner)
            ):
                return local
            pull = self._pulls[key] = Pull(
                image,
                auth=auth,
                owner=owner,
                id_before=local,
                for_another_login=auth is None and local is not None,
            )
            pull.task = asyncio.create_task(asyncio.to_thread(self._pull, pull))
        if not pull.done:
            raise StartPending(f"pulling {image}: {pull.percent()}%")
        del self._pulls[key]
        if pull.error is not None:
            if pull.for_another_login:
                registry = registry_of(image)
                raise StartError(
                    f"image {image!r} needs a login to {registry}: the copy on this engine was "
                    "pulled with another user's login, and pulling it without one failed "
                    f"({pull.error}); store yours with PUT /v1/registry-credentials/{registry} "
                    "and start the endpoint again"
                )
            raise StartError(
                f"cannot pull image {image!r}: {pull.error}; check deploy_metadata.image_url "
                "and that the engine can reach its registry"
            )
        if pull.image_id is None:  # every pull that ended without an error sets it
            raise StartError(f"the pull of image {image!r} left no image id")
        return pull.image_id

    async def close(self) -> None:
        """Stops every pull under way and waits for its thread to end."""
        pulls = list(self._pulls.values())
        self._pulls.clear()
        for pull in pulls:
            pull.stop()
        tasks = [pull.task for pull in pulls if pull.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _image_id(self, image: str) -> str | None:
        try:
            return str(self.client.images.get(image).id)
        except ImageNotFound:
            return None

    def _may_start(self, image_id: str, owner: str) -> bool:
        try:
            return self.record.may_start(image_id, owner)
        except RecordError as exc:
            raise StartError(f"cannot tell who may start image {image_id}: {exc}") from exc

    def _note(self, pull: Pull) -> None:
        """Sets the id the pull left and notes who may start it."""
        image_id = self._image_id(pull.image)
        if image_id is None:
            pull.error = "the engine has no such image after pulling it"
            return
        try:
            self.record.pulled(
                image_id, owner=pull.owner, with_login=bool(pull.auth), id_before=pull.id_before
            )
        except RecordError as exc:
            pull.error = f"cannot note who may start it: {exc}"
            return
        pull.image_id = image_id

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
            if not pull.stopped and pull.error is None:
                self._note(pull)
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
