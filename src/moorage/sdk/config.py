"""The client's config file: the URL and token ``moorage login`` keeps.

A TOML file with two keys, ``url`` and ``token``, readable by its owner only (0600),
at ``$MOORAGE_CLIENT_CONFIG``, else ``$XDG_CONFIG_HOME/moorage/config.toml``, else
``~/.config/moorage/config.toml``. Environment variables and explicit arguments
override it (``target.py``).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tomllib
from pathlib import Path

from moorage.sdk.errors import MoorageError

KEYS = ("url", "token")


def config_path() -> Path:
    if os.environ.get("MOORAGE_CLIENT_CONFIG"):
        return Path(os.environ["MOORAGE_CLIENT_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "moorage" / "config.toml"


def read_config(path: Path | None = None) -> dict[str, str]:
    """The file's ``url`` and ``token`` (those set); nothing when there is no file. A
    file that is not TOML is an error naming it, never silently ignored."""
    where = path or config_path()
    try:
        seen = where.stat()
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise MoorageError(f"cannot read the config file {where}: {exc}") from exc
    if not owned_privately(seen):
        # Someone else could have put a server of theirs in it, to receive a token.
        raise MoorageError(
            f"the config file {where} belongs to another user or can be written by others; "
            "delete it and run `moorage login` again"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MoorageError(
            f"the config file {where} is not valid TOML ({exc}); fix it, delete it, or run "
            "`moorage login` again"
        ) from exc
    return {key: value for key in KEYS if isinstance(value := data.get(key), str) and value}


def write_config(url: str, token: str, path: Path | None = None) -> Path:
    """Writes both keys, readable by their owner only. The folder must be the user's
    own and closed to others (one made here is 0700), and the file is written anew
    (a temporary file created exclusively, then renamed over the old), so a file or
    link someone else planted at the path is replaced, never written through."""
    where = path or config_path()
    folder = where.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    _check_private(folder)
    text = "".join(
        f"{key} = {_toml_string(value)}\n" for key, value in (("url", url), ("token", token))
    )
    temporary = folder / f".{where.name}.{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    descriptor = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, where)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return where


def owned_privately(seen: os.stat_result) -> bool:
    """The caller's own, and writable by no one else: a file someone else could have
    written (a token of theirs, a server of theirs) is not trusted."""
    return seen.st_uid == os.getuid() and not seen.st_mode & 0o022


def _check_private(folder: Path) -> None:
    """The config's folder must be the user's and writable by no one else: in a folder
    others may write to, they could swap the file or read a token through a link."""
    seen = folder.stat()
    if seen.st_uid != os.getuid():
        raise MoorageError(
            f"the config folder {folder} belongs to another user (uid {seen.st_uid}); "
            "set MOORAGE_CLIENT_CONFIG to a file in a folder of your own"
        )
    if seen.st_mode & 0o022:
        raise MoorageError(
            f"the config folder {folder} can be written by others (mode "
            f"{stat.S_IMODE(seen.st_mode):o}); run `chmod go-w {folder}` or set "
            "MOORAGE_CLIENT_CONFIG to a file in a private folder"
        )


def _toml_string(value: str) -> str:
    """A TOML basic string: JSON's escapes (quotes, backslashes, control characters)
    are TOML's, with other characters kept as they are, and DEL escaped too."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def remove_config(path: Path | None = None) -> Path | None:
    """Deletes the file (``moorage logout``); the path it removed, or None."""
    where = path or config_path()
    try:
        seen = where.lstat()
    except FileNotFoundError:
        return None
    if seen.st_uid != os.getuid():
        raise MoorageError(
            f"{where} belongs to another user (uid {seen.st_uid}): it is not your config "
            "file and is left as it is; check MOORAGE_CLIENT_CONFIG"
        )
    where.unlink()
    return where
