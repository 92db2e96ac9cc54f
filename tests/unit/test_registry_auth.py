"""A user's registry credentials go with that user's pulls and no one else's.

No registry is reachable here, so the engine's pull API is recorded: the test reads
the ``X-Registry-Auth`` header each pull was asked with.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from docker.auth import AuthConfig
from docker.errors import ImageNotFound

from moorage.runtimes.base import StartPending
from moorage.runtimes.docker_images import ImagePuller, Pull, registry_of

IMAGE = "ghcr.io/alice/private-model:1"
ALICE = {"username": "alice", "password": "s3cret-pass", "serveraddress": "ghcr.io"}


@dataclass
class _Response:
    status_code: int = 200

    def iter_lines(self) -> Iterator[bytes]:
        yield b'{"status": "Downloaded newer image"}'

    def close(self) -> None:
        pass


@dataclass
class _Api:
    base_url: str = "http+docker://engine"
    api_version: str = "1.41"
    credstore_env: None = None
    # The engine client's own configuration: empty (no ~/.docker/config.json here).
    _auth_configs: AuthConfig = field(default_factory=lambda: AuthConfig({"auths": {}}))
    asked: list[dict[str, Any]] = field(default_factory=list)
    # Image ids by reference: what the engine has (a pull leaves the image).
    present: dict[str, str] = field(default_factory=dict)

    def post(self, url: str, **kwargs: Any) -> _Response:
        self.asked.append(kwargs)
        params = kwargs["params"]
        self.present[f"{params['fromImage']}:{params['tag']}"] = "sha256:" + "a" * 64
        return _Response()


@dataclass
class _Image:
    id: str


@dataclass
class _Images:
    present: dict[str, str]

    def get(self, name: str) -> _Image:
        if name not in self.present:
            raise ImageNotFound(name)
        return _Image(self.present[name])


@dataclass
class _Client:
    api: _Api = field(default_factory=_Api)

    @property
    def images(self) -> _Images:
        return _Images(self.api.present)


def _pull(puller: ImagePuller, **kwargs: Any) -> None:
    async def until_pulled() -> None:
        for _ in range(200):
            try:
                await puller.ensure(IMAGE, **kwargs)
            except StartPending:
                await asyncio.sleep(0.01)
            else:
                return
        raise AssertionError("the pull never ended")

    asyncio.run(until_pulled())


def _auth_header(asked: dict[str, Any]) -> dict[str, str] | None:
    header = asked["headers"].get("X-Registry-Auth")
    if header is None:
        return None
    raw = header if isinstance(header, bytes) else header.encode()
    decoded: dict[str, str] = json.loads(base64.urlsafe_b64decode(raw + b"=="))
    return decoded


def test_the_registry_of_an_image_is_what_credentials_are_stored_under() -> None:
    assert registry_of(IMAGE) == "ghcr.io"
    assert registry_of("registry.example:5000/team/app:v2") == "registry.example:5000"
    assert registry_of("python:3.10-slim") == "docker.io"


def test_a_pull_asks_with_the_owners_credentials() -> None:
    client = _Client()
    _pull(ImagePuller(client), auth=ALICE, owner="alice-id")  # type: ignore[arg-type]
    (asked,) = client.api.asked
    assert asked["params"] == {"fromImage": "ghcr.io/alice/private-model", "tag": "1"}
    assert _auth_header(asked) == ALICE


def test_another_users_pull_of_the_same_image_never_carries_them() -> None:
    client = _Client()
    puller = ImagePuller(client)  # type: ignore[arg-type]
    _pull(puller, auth=ALICE, owner="alice-id")
    _pull(puller, auth=None, owner="bob-id")
    _pull(puller, auth={**ALICE, "username": "bob", "password": "b"}, owner="bob-id")
    alice, bob_without, bob_with = (_auth_header(a) for a in client.api.asked)
    assert alice == ALICE
    assert bob_without is None
    assert bob_with is not None
    assert bob_with["username"] == "bob"
    assert "s3cret-pass" not in json.dumps(client.api.asked[1:], default=str)


def test_credentials_are_not_in_a_pulls_repr() -> None:
    assert "s3cret-pass" not in repr(Pull(IMAGE, auth=ALICE))
