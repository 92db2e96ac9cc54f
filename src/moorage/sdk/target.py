"""Which moorage a client calls and with which token, and where each came from.

The order, for each of the two: an explicit argument; the environment
(``MOORAGE_URL``, ``MOORAGE_TOKEN``); the config file ``moorage login`` writes
(``config.py``); then, beside a server, the settings ``moorage serve`` runs by
(``MOORAGE_HOST`` and ``MOORAGE_PORT``; ``MOORAGE_ADMIN_TOKEN`` and the admin-token
file in ``MOORAGE_HOME``). Each value keeps where it came from, so an error can say
what was tried and how to change it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from moorage.sdk.config import config_path, read_config
from moorage.sdk.errors import NO_TOKEN, ApiError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = "8080"
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
# Addresses ``moorage serve`` may listen on that a client cannot call: it calls this host.
_ANY_ADDRESS = {"", "0.0.0.0", "::", "[::]"}
HOW_TO_POINT = (
    "pass --url URL, set MOORAGE_URL, or run `moorage login --url URL` "
    "(beside a server, MOORAGE_PORT as moorage serve has it also works)"
)


@dataclass(frozen=True)
class Target:
    """The moorage a client calls, with its token, and where each came from
    (``--url``, ``MOORAGE_URL``, the config file ...), for error messages."""

    url: str
    url_from: str
    token: str
    token_from: str


def resolve_url(url: str | None, config: dict[str, str] | None = None) -> tuple[str, str]:
    if url:
        return url.rstrip("/"), "--url"
    if os.environ.get("MOORAGE_URL"):
        return os.environ["MOORAGE_URL"].rstrip("/"), "MOORAGE_URL"
    saved = (read_config() if config is None else config).get("url")
    if saved:
        return saved.rstrip("/"), f"the config file {config_path()}"
    port = os.environ.get("MOORAGE_PORT", "").strip()
    host = os.environ.get("MOORAGE_HOST", "").strip()
    if not port and host in _ANY_ADDRESS:
        return DEFAULT_URL, "the default (no --url, MOORAGE_URL, config file or MOORAGE_PORT)"
    address = DEFAULT_HOST if host in _ANY_ADDRESS else host
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    named = " and ".join(
        f"{name}={value}"
        for name, value in (("MOORAGE_HOST", host), ("MOORAGE_PORT", port))
        if value
    )
    return f"http://{address}:{port or DEFAULT_PORT}", named


def resolve_token(token: str | None, config: dict[str, str] | None = None) -> tuple[str, str]:
    if token:
        return token, "--token"
    if os.environ.get("MOORAGE_TOKEN"):
        return os.environ["MOORAGE_TOKEN"], "MOORAGE_TOKEN"
    saved = (read_config() if config is None else config).get("token")
    if saved:
        return saved, f"the config file {config_path()}"
    if os.environ.get("MOORAGE_ADMIN_TOKEN"):
        return os.environ["MOORAGE_ADMIN_TOKEN"], "MOORAGE_ADMIN_TOKEN"
    token_file = Path(os.environ.get("MOORAGE_HOME", ".moorage")) / "admin-token"
    if token_file.exists():
        return token_file.read_text().strip(), f"the admin-token file {token_file}"
    raise ApiError(
        0,
        NO_TOKEN,
        "no token: no --token, MOORAGE_TOKEN, config file "
        f"({config_path()}), MOORAGE_ADMIN_TOKEN or admin-token file at "
        f"{token_file.absolute()}; run `moorage login`, pass --token, or set MOORAGE_TOKEN",
    )


def resolve_target(url: str | None = None, token: str | None = None) -> Target:
    config = read_config()
    where, where_from = resolve_url(url, config)
    secret, secret_from = resolve_token(token, config)
    return Target(where, where_from, secret, secret_from)


def unreachable_message(target: Target, reason: str) -> str:
    return (
        f"cannot reach moorage at {target.url} (from {target.url_from}): {reason}. Is "
        f"`moorage serve` running there? To call another address, {HOW_TO_POINT}."
    )


def unknown_token_hint(target: Target) -> str:
    return (
        f"The server at {target.url} (from {target.url_from}) does not know the token from "
        f"{target.token_from}. If it is another moorage's token, point at that server "
        f"({HOW_TO_POINT}) or use this server's token (--token, MOORAGE_TOKEN or `moorage "
        "login`); otherwise ask this server's admin for a new one."
    )
