"""``moorage logs ENDPOINT``: what an endpoint's replicas print, optionally followed."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from moorage.cli.common import TokenOption, UrlOption, connect, find
from moorage.cli.shown import visible


def logs(
    endpoint: Annotated[
        str,
        typer.Argument(
            metavar="ENDPOINT",
            help="The endpoint's service_id, or the exact name of one of yours.",
        ),
    ],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output.")
    ] = False,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines of each replica.")] = None,
    replica: Annotated[str | None, typer.Option(help="Only this replica (id or prefix).")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Print the replicas' stdout and stderr."""
    with connect(url, token) as client:
        service_id = find(client, endpoint).service_id
        # A terminal is shown a replica's control sequences, not driven by them (no
        # title, clipboard or screen changes); a pipe or a file gets the bytes as they are.
        shown = visible if sys.stdout.isatty() else str
        try:
            for line in client.logs(service_id, replica=replica, tail=tail, follow=follow):
                sys.stdout.write(shown(line) + "\n")
                sys.stdout.flush()
        except KeyboardInterrupt:  # how a follower is stopped: not an error
            return
