"""``moorage login`` and ``logout``: keep a server's URL and a token in the config
file (0600) so that later commands need neither flag nor environment variable.

The token is checked with a call before it is kept: a typo is refused at once, not
at the next command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from moorage.cli.common import UrlOption, check_scheme, connect, err, fail
from moorage.cli.shown import line
from moorage.sdk.config import config_path, remove_config, write_config
from moorage.sdk.target import resolve_url


def login(
    url: UrlOption = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="The API token [prompted for, hidden; MOORAGE_TOKEN is not read here].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check a token against a server and keep both in the config file."""
    check_scheme(url)
    where, _ = resolve_url(url)
    if token is None:
        token = typer.prompt(f"API token for {where}", hide_input=True, err=True).strip()
    if not token:
        fail("--token: empty; pass the token moorage printed, or one `moorage tokens` made", 2)
    with connect(where, token) as client:
        who = client.quota()
        path = write_config(client.url, token)
    err.print(line(f"logged in to {where} as user {who.user_id}; kept in {path} (mode 0600)"))


def logout() -> None:
    """Forget the URL and token `moorage login` kept."""
    removed = remove_config()
    if removed is None:
        err.print(line(f"not logged in (no {config_path()})"))
    else:
        err.print(line(f"removed {removed}"))
