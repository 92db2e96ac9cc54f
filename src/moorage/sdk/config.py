"""The client's config file: the URL and token ``moorage login`` keeps.

A TOML file with two keys, ``url`` and ``token``, readable by its owner only (0600),
at ``$MOORAGE_CLIENT_CONFIG``, else ``$XDG_CONFIG_HOME/moorage/config.toml``, else
``~/.config/moorage/config.toml``. Environment variables and explicit arguments
override it (``target.py``).
"""

from __future__ import annotations

import json
import os
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
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise MoorageError(f"cannot read the config file {where}: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MoorageError(
            f"the config file {where} is not valid TOML ({exc}); fix it, delete it, or run "
            "`moorage login` again"
        ) from exc
    return {key: value for key in KEYS if isinstance(value := data.get(key), str) and value}


def write_config(url: str, token: str, path: Path | None = None) -> Path:
    """Writes both keys, creating the folder; the file is created 0600 before the
    token is in it, so it is never readable by others, even for a moment."""
    where = path or config_path()
    where.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = "".join(
        f"{key} = {_toml_string(value)}\n" for key, value in (("url", url), ("token", token))
    )
    descriptor = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    return where


def _toml_string(value: str) -> str:
    """A TOML basic string: JSON's escapes (quotes, backslashes, control characters)
    are TOML's, with other characters kept as they are, and DEL escaped too."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def remove_config(path: Path | None = None) -> Path | None:
    """Deletes the file (``moorage logout``); the path it removed, or None."""
    where = path or config_path()
    try:
        where.unlink()
    except FileNotFoundError:
        return None
    return where
