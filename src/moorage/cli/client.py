"""How CLI commands reach a running moorage: its URL and a token, and where each came
from, so that an error can say what was tried and how to change it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.markup import escape

# soft_wrap: a message is one line, never cut at 80 columns in the middle of a URL.
err = Console(stderr=True, soft_wrap=True)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = "8080"
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
# Addresses ``moorage serve`` may listen on that a client cannot call: it calls this host.
_ANY_ADDRESS = {"", "0.0.0.0", "::", "[::]"}
HOW_TO_POINT = "pass --url URL, or set MOORAGE_URL (or MOORAGE_PORT, as moorage serve has it)"


@dataclass(frozen=True)
class Target:
    """The moorage a command calls, with a token, and where each came from
    (``--url``, ``MOORAGE_URL``, ...), for error messages."""

    url: str
    url_from: str
    token: str
    token_from: str


def resolve_url(url: str | None) -> tuple[str, str]:
    """``--url``, else ``MOORAGE_URL``, else this host at ``MOORAGE_HOST`` and
    ``MOORAGE_PORT`` (the settings ``moorage serve`` listens by), else the default."""
    if url:
        return url, "--url"
    if os.environ.get("MOORAGE_URL"):
        return os.environ["MOORAGE_URL"], "MOORAGE_URL"
    port = os.environ.get("MOORAGE_PORT", "").strip()
    host = os.environ.get("MOORAGE_HOST", "").strip()
    if not port and host in _ANY_ADDRESS:
        return DEFAULT_URL, "the default (no --url, MOORAGE_URL or MOORAGE_PORT)"
    address = DEFAULT_HOST if host in _ANY_ADDRESS else host
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    named = " and ".join(
        f"{name}={value}"
        for name, value in (("MOORAGE_HOST", host), ("MOORAGE_PORT", port))
        if value
    )
    return f"http://{address}:{port or DEFAULT_PORT}", named


def resolve_token(token: str | None) -> tuple[str, str]:
    """``--token``, else ``MOORAGE_TOKEN``, else the admin's token beside the server
    (``MOORAGE_ADMIN_TOKEN``, then the admin-token file in ``MOORAGE_HOME``)."""
    if token:
        return token, "--token"
    for name in ("MOORAGE_TOKEN", "MOORAGE_ADMIN_TOKEN"):
        if os.environ.get(name):
            return os.environ[name], name
    token_file = Path(os.environ.get("MOORAGE_HOME", ".moorage")) / "admin-token"
    if token_file.exists():
        return token_file.read_text().strip(), f"the admin-token file {token_file}"
    err.print(
        "[red]error:[/red] no token: no --token, MOORAGE_TOKEN or MOORAGE_ADMIN_TOKEN, and "
        f"no admin-token file at {escape(str(token_file.absolute()))}; pass --token, set "
        "MOORAGE_TOKEN, or run where moorage keeps its admin-token file (its MOORAGE_HOME)"
    )
    raise typer.Exit(2)


def target(url: str | None, token: str | None) -> Target:
    where, where_from = resolve_url(url)
    secret, secret_from = resolve_token(token)
    return Target(where, where_from, secret, secret_from)


def api_client(to: Target, *, timeout: float | None = 30.0) -> httpx.Client:
    return httpx.Client(
        base_url=to.url,
        headers={"Authorization": f"Bearer {to.token}"},
        timeout=timeout,
        trust_env=False,
    )


def unreachable(to: Target, exc: Exception) -> str:
    """Why moorage could not be called: the URL tried, where it came from, the
    transport's words and how to point elsewhere."""
    reason = str(exc) or type(exc).__name__
    return (
        f"cannot reach moorage at {to.url} (from {to.url_from}): {reason}. Is `moorage "
        f"serve` running there? To call another address, {HOW_TO_POINT}."
    )


def unknown_token_hint(to: Target) -> str:
    return (
        f"The server at {to.url} (from {to.url_from}) does not know the token from "
        f"{to.token_from}. If it is another moorage's token, point at that server ("
        f"{HOW_TO_POINT}) or use this server's token (--token or MOORAGE_TOKEN); "
        "otherwise ask this server's admin for a new one (`moorage tokens create "
        "--user NAME` beside it)."
    )


def fail_with(response: httpx.Response, to: Target) -> None:
    """Prints the API's error message and exits, for any non-2xx answer; a 401 also
    says which server and which token were tried and what to do."""
    try:
        message = response.json().get("message", response.text)
    except ValueError:
        message = response.text
    err.print(f"[red]error ({response.status_code}):[/red] {escape(str(message))}")
    if response.status_code == 401:
        err.print(escape(unknown_token_hint(to)))
    raise typer.Exit(1)
