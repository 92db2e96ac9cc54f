"""Who may start a local image without a pull: images a pull with a user's registry
login brought are that user's until the registry serves them to someone else.

The decision is pure; the record is a JSON file that outlives the runtime; the puller
(against a recorded engine API, since no registry is reachable here) pulls again for
another owner and fails with a login hint when the registry refuses.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from docker.auth import AuthConfig
from docker.errors import ImageNotFound

from moorage.runtimes.base import StartError, StartPending
from moorage.runtimes.docker_images import ImagePuller
from moorage.runtimes.image_access import (
    ImageAccess,
    ImagePullRecord,
    RecordError,
    after_pull,
    may_start,
)

PRIVATE = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
IMAGE = "registry.example:5000/alice-private:1"
ALICE_LOGIN = {"username": "alice", "password": "pw", "serveraddress": "registry.example:5000"}


# -- the decision ------------------------------------------------------------------


def test_an_image_no_login_brought_is_anyones() -> None:
    assert may_start({}, PRIVATE, "mallory")
    assert may_start({}, PRIVATE, "")


def test_an_image_pulled_with_alices_login_is_hers_alone() -> None:
    record = after_pull({}, PRIVATE, owner="alice", with_login=True, id_before=None)
    assert may_start(record, PRIVATE, "alice")
    assert not may_start(record, PRIVATE, "mallory")
    assert not may_start(record, PRIVATE, ""), "a replica with no owner is no one's"
    assert may_start(record, OTHER, "mallory"), "only that image id"


def test_each_users_own_logged_in_pull_adds_them() -> None:
    record = after_pull({}, PRIVATE, owner="alice", with_login=True, id_before=None)
    record = after_pull(record, PRIVATE, owner="bob", with_login=True, id_before=PRIVATE)
    assert record[PRIVATE] == ImageAccess(users=frozenset({"alice", "bob"}))
    assert not may_start(record, PRIVATE, "mallory")


def test_a_pull_without_a_login_that_succeeds_makes_it_public() -> None:
    record = after_pull({}, PRIVATE, owner="alice", with_login=True, id_before=None)
    record = after_pull(record, PRIVATE, owner="mallory", with_login=False, id_before=PRIVATE)
    assert may_start(record, PRIVATE, "anyone")
    again = after_pull(record, PRIVATE, owner="carol", with_login=True, id_before=None)
    assert may_start(again, PRIVATE, "anyone"), "a public image stays public"


def test_a_pull_without_a_login_of_an_unrecorded_image_records_nothing() -> None:
    assert after_pull({}, PRIVATE, owner="bob", with_login=False, id_before=None) == {}


def test_a_local_copy_anyone_could_use_stays_so_when_a_login_finds_it_unchanged() -> None:
    # The operator loaded it; alice's logged-in pull of the same tag left the same id.
    record = after_pull({}, PRIVATE, owner="alice", with_login=True, id_before=PRIVATE)
    assert may_start(record, PRIVATE, "mallory")


def test_a_moved_tag_restricts_the_new_id() -> None:
    # The tag named a public image before; alice's login pulled a new private one.
    record = after_pull({}, OTHER, owner="alice", with_login=True, id_before=PRIVATE)
    assert not may_start(record, OTHER, "mallory")
    assert may_start(record, PRIVATE, "mallory")


# -- the record ----------------------------------------------------------------------


def test_the_record_outlives_the_runtime_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "docker" / "image-pulls.json"
    ImagePullRecord(path).pulled(PRIVATE, owner="alice", with_login=True)
    again = ImagePullRecord(path)
    assert again.may_start(PRIVATE, "alice")
    assert not again.may_start(PRIVATE, "mallory")
    assert path.stat().st_mode & 0o077 == 0
    assert json.loads(path.read_text())["images"][PRIVATE] == {"users": ["alice"], "public": False}
    assert [p.name for p in path.parent.iterdir()] == ["image-pulls.json"], "no temporary left"


def test_an_unreadable_record_refuses_rather_than_forgets(tmp_path: Path) -> None:
    path = tmp_path / "image-pulls.json"
    path.write_text("{not json")
    with pytest.raises(RecordError, match="is not a record of image pulls"):
        ImagePullRecord(path).may_start(PRIVATE, "mallory")


# -- the puller ----------------------------------------------------------------------


@dataclass
class _Response:
    lines: list[bytes]
    status_code: int = 200

    def iter_lines(self) -> Any:
        return iter(self.lines)

    def close(self) -> None:
        pass


@dataclass
class _Image:
    id: str


@dataclass
class _Engine:
    """The engine's image API: ``present`` ids by reference; a pull without a login
    fails unless ``public``, and a pull with one leaves ``pulled_id``."""

    present: dict[str, str] = field(default_factory=dict)
    public: bool = False
    pulled_id: str = PRIVATE
    asked: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = "http+docker://engine"
    api_version: str = "1.41"
    credstore_env: None = None
    _auth_configs: Any = None

    def __post_init__(self) -> None:
        self._auth_configs = AuthConfig({"auths": {}})

    def post(self, url: str, **kwargs: Any) -> _Response:
        self.asked.append(kwargs)
        if "X-Registry-Auth" not in kwargs["headers"] and not self.public:
            return _Response([b'{"error": "unauthorized: authentication required"}'])
        self.present[IMAGE] = self.pulled_id
        return _Response([b'{"status": "Downloaded newer image"}'])

    def get(self, name: str) -> _Image:
        if name not in self.present:
            raise ImageNotFound(name)
        return _Image(self.present[name])


class _Client:
    def __init__(self, engine: _Engine) -> None:
        self.api = engine
        self.images = engine


def _ensure(puller: ImagePuller, **kwargs: Any) -> str:
    async def until_done() -> str:
        for _ in range(200):
            try:
                return await puller.ensure(IMAGE, **kwargs)
            except StartPending:
                await asyncio.sleep(0.01)
        raise AssertionError("the pull never ended")

    return asyncio.run(until_done())


def test_mallory_never_starts_the_copy_alices_login_pulled(tmp_path: Path) -> None:
    engine = _Engine()
    puller = ImagePuller(_Client(engine), ImagePullRecord(tmp_path / "pulls.json"))  # type: ignore[arg-type]
    assert _ensure(puller, auth=ALICE_LOGIN, owner="alice") == PRIVATE
    with pytest.raises(StartError) as refused:
        _ensure(puller, auth=None, owner="mallory")
    message = str(refused.value)
    assert "needs a login to registry.example:5000" in message
    assert "PUT /v1/registry-credentials/registry.example:5000" in message
    assert "authentication required" in message
    assert len(engine.asked) == 2, "mallory's replica asked the registry"
    assert "X-Registry-Auth" not in engine.asked[1]["headers"]


def test_alice_without_her_login_now_still_starts_what_it_pulled(tmp_path: Path) -> None:
    engine = _Engine()
    puller = ImagePuller(_Client(engine), ImagePullRecord(tmp_path / "pulls.json"))  # type: ignore[arg-type]
    _ensure(puller, auth=ALICE_LOGIN, owner="alice")
    assert _ensure(puller, auth=None, owner="alice") == PRIVATE
    assert len(engine.asked) == 1


def test_a_registry_that_serves_anyone_makes_the_image_public(tmp_path: Path) -> None:
    engine = _Engine()
    puller = ImagePuller(_Client(engine), ImagePullRecord(tmp_path / "pulls.json"))  # type: ignore[arg-type]
    _ensure(puller, auth=ALICE_LOGIN, owner="alice")
    engine.public = True
    assert _ensure(puller, auth=None, owner="mallory") == PRIVATE
    assert _ensure(puller, auth=None, owner="carol") == PRIVATE
    assert len(engine.asked) == 2, "public from then on: carol starts it without a pull"


def test_a_locally_loaded_image_runs_for_anyone_without_a_pull(tmp_path: Path) -> None:
    engine = _Engine(present={IMAGE: OTHER})
    puller = ImagePuller(_Client(engine), ImagePullRecord(tmp_path / "pulls.json"))  # type: ignore[arg-type]
    assert _ensure(puller, auth=None, owner="mallory") == OTHER
    assert engine.asked == []
