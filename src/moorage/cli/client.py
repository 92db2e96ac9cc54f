"""How CLI commands reach a running moorage: its URL and a token."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import typer
from rich.console import Console

err = Console(stderr=True)
DEFAULT_URL = "http://127.0.0.1:8080"


def resolve_token(token: str | None) -> str:
    """``--token``, else ``MOORAGE_TOKEN``, else the admin token file on this host."""
    if token:
        return token
    if os.environ.get("MOORAGE_TOKEN"):
        return os.environ["MOORAGE_TOKEN"]
    token_file = Path(os.environ.get("MOORAGE_HOME", ".moorage")) / "admin-token"
    if token_file.exists():
        return token_file.read_text().strip()
    err.print(
        "[red]error:[/red] no token: pass --token, set MOORAGE_TOKEN, or run where "
        "moorage keeps its admin-token file"
    )
    raise typer.Exit(2)


def api_client(url: str | None, token: str | None, *, timeout: float | None = 30.0) -> httpx.Client:
    return httpx.Client(
        base_url=url or os.environ.get("MOORAGE_URL", DEFAULT_URL),
        headers={"Authorization": f"Bearer {resolve_token(token)}"},
        timeout=timeout,
        trust_env=False,
    )


def fail_with(response: httpx.Response) -> None:
    """Prints the API's error message and exits, for any non-2xx answer."""
    try:
        message = response.json().get("message", response.text)
    except ValueError:
        message = response.text
    err.print(f"[red]error ({response.status_code}):[/red] {message}")
    raise typer.Exit(1)
