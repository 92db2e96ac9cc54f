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
from dataclasses import dataclass, field
from pathlib import Path

from moorage.sdk.config import config_path, owned_privately, read_config
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
    # Never in a repr: a logged client or target must not carry the secret.
    token: str = field(repr=False)
    token_from: str = ""


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


# Where a URL came from when it is the server's own address, set beside it: only
# then may the admin's token, kept beside the server, be sent without being named.
_LOCAL = ("the default", "MOORAGE_HOST", "MOORAGE_PORT")


def resolve_token(
    token: str | None, url: str, url_from: str, config: dict[str, str] | None = None
) -> tuple[str, str]:
    """A token named for this call (``--token``, ``MOORAGE_TOKEN``) goes anywhere.
    One kept elsewhere goes only where it belongs: the config file's to the URL it was
    kept with, the admin's (``MOORAGE_ADMIN_TOKEN``, the admin-token file) to the
    server's own address, so that a ``--url`` or ``MOORAGE_URL`` pointing elsewhere (a
    typo, a copied command, a planted ``.env``) never hands either to another server."""
    if token:
        return token, "--token"
    if os.environ.get("MOORAGE_TOKEN"):
        return os.environ["MOORAGE_TOKEN"], "MOORAGE_TOKEN"
    saved = read_config() if config is None else config
    if saved.get("token") and saved.get("url", "").rstrip("/") == url:
        return saved["token"], f"the config file {config_path()}"
    local = url_from.startswith(_LOCAL)
    if local and os.environ.get("MOORAGE_ADMIN_TOKEN"):
        return os.environ["MOORAGE_ADMIN_TOKEN"], "MOORAGE_ADMIN_TOKEN"
    token_file = Path(os.environ.get("MOORAGE_HOME", ".moorage")) / "admin-token"
    if local and token_file.exists():
        if not (owned_privately(token_file.stat()) and owned_privately(token_file.parent.stat())):
            # Planted in a shared folder, it would make the caller act as its planter.
            raise ApiError(
                0,
                NO_TOKEN,
                f"the admin-token file {token_file.absolute()} (or its folder) belongs to "
                "another user or can be written by others, so it is not used; pass --token "
                "or set MOORAGE_TOKEN",
            )
        return token_file.read_text().strip(), f"the admin-token file {token_file}"
    raise ApiError(0, NO_TOKEN, _no_token(url, url_from, saved, local, token_file))


def _no_token(url: str, url_from: str, saved: dict[str, str], local: bool, token_file: Path) -> str:
    tried = ["no --token or MOORAGE_TOKEN"]
    if saved.get("token"):
        tried.append(
            f"the token `moorage login` kept is for {saved.get('url')}, not {url} (from "
            f"{url_from}), and is sent only there"
        )
    else:
        tried.append(f"no config file at {config_path()}")
    if local:
        tried.append(f"no MOORAGE_ADMIN_TOKEN or admin-token file at {token_file.absolute()}")
    else:
        tried.append("the admin's token, kept beside the server, is sent only to its own address")
    return (
        f"no token for {url}: {'; '.join(tried)}. Pass --token, set MOORAGE_TOKEN, or run "
        f"`moorage login --url {url}`"
    )


def resolve_target(url: str | None = None, token: str | None = None) -> Target:
    config = read_config()
    where, where_from = resolve_url(url, config)
    secret, secret_from = resolve_token(token, where, where_from, config)
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
