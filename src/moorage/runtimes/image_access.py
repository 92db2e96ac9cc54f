"""Who may start a local image without pulling it first: the record of logged-in pulls.

A pull made with a user's registry login leaves the image on the engine, where any
container may start from it. So that another user's login is never used, not even
through its result, the docker runtime remembers, by image id (``sha256:...``),
which images a pull with a login brought and for whom. A replica of another owner
pulls the image again, with that owner's own login for the registry or with none,
and the registry decides; a pull without a login that succeeds shows the image is
public, and anyone may use it from then on. An image no pull with a login brought
(loaded by the operator, pulled without one) is anyone's, as it always was.

The record is a small JSON file under ``MOORAGE_HOME`` (the engine cannot label an
image after its pull), read at each check and replaced atomically at each change,
so it outlives restarts. An unreadable record stops starts rather than lose who
may use what.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

RECORD_VERSION = 1


@dataclass(frozen=True)
class ImageAccess:
    """Who may start one image id without a pull: ``users``, or anyone when ``public``."""

    users: frozenset[str] = frozenset()
    public: bool = False


Record = Mapping[str, ImageAccess]


def may_start(record: Record, image_id: str, owner: str) -> bool:
    """Whether ``owner``'s replica may start ``image_id`` as it is on the engine."""
    access = record.get(image_id)
    return access is None or access.public or owner in access.users


def after_pull(
    record: Record, image_id: str, *, owner: str, with_login: bool, id_before: str | None
) -> dict[str, ImageAccess]:
    """The record once ``owner`` pulled ``image_id``, with their login or without one.

    ``id_before`` is the id the reference named on the engine before the pull: an
    image that was there already, usable by anyone, stays so when a pull with a
    login finds it unchanged (an operator's local copy of a public image is not
    taken from everyone because one user has a login for its registry).
    """
    updated = dict(record)
    access = record.get(image_id)
    if not with_login:
        if access is not None:  # the registry serves it to anyone
            updated[image_id] = ImageAccess(public=True)
        return updated
    if access is None:
        if id_before == image_id:
            return updated
        updated[image_id] = ImageAccess(users=frozenset({owner}))
    elif not access.public:
        updated[image_id] = ImageAccess(users=access.users | {owner})
    return updated


class RecordError(Exception):
    """The record of logged-in pulls cannot be read or written."""


class ImagePullRecord:
    """The record, kept in ``path`` (None: in memory only, for a runtime without a home)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._memory: dict[str, ImageAccess] = {}
        self._lock = threading.Lock()

    def may_start(self, image_id: str, owner: str) -> bool:
        with self._lock:
            return may_start(self._load(), image_id, owner)

    def pulled(
        self, image_id: str, *, owner: str, with_login: bool, id_before: str | None = None
    ) -> None:
        """Notes a pull that ended with ``image_id`` on the engine."""
        with self._lock:
            current = self._load()
            updated = after_pull(
                current, image_id, owner=owner, with_login=with_login, id_before=id_before
            )
            if updated != current:
                self._save(updated)

    def _load(self) -> dict[str, ImageAccess]:
        if self.path is None:
            return dict(self._memory)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise RecordError(f"cannot read {self.path}: {exc}") from exc
        try:
            data = json.loads(text)
            images = data["images"]
            return {
                str(image_id): ImageAccess(
                    users=frozenset(str(user) for user in entry.get("users", [])),
                    public=bool(entry.get("public", False)),
                )
                for image_id, entry in images.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RecordError(
                f"{self.path} is not a record of image pulls ({exc}); restore it, or remove "
                "it and the images it names from the engine"
            ) from exc

    def _save(self, record: Mapping[str, ImageAccess]) -> None:
        if self.path is None:
            self._memory = dict(record)
            return
        data = {
            "version": RECORD_VERSION,
            "images": {
                image_id: {"users": sorted(access.users), "public": access.public}
                for image_id, access in sorted(record.items())
            },
        }
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".image-pulls-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    json.dump(data, file, indent=1)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            raise RecordError(f"cannot write {self.path}: {exc}") from exc
