"""``moorage logs ID``: what an endpoint's replicas print, optionally followed."""

from __future__ import annotations

import sys
from typing import Annotated

import httpx
import typer
from rich.markup import escape

from moorage.cli.client import api_client, err, fail_with, target, unreachable


def logs(
    service_id: Annotated[str, typer.Argument(help="The endpoint's service_id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output.")
    ] = False,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines of each replica.")] = None,
    replica: Annotated[str | None, typer.Option(help="Only this replica (id or prefix).")] = None,
    url: Annotated[
        str | None,
        typer.Option(help="moorage's URL [MOORAGE_URL; else this host at MOORAGE_PORT, 8080]."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="API token [MOORAGE_TOKEN; else the admin's, beside the server]."),
    ] = None,
) -> None:
    """Print the replicas' stdout and stderr."""
    params: dict[str, str] = {"follow": str(follow).lower()}
    if tail is not None:
        params["tail"] = str(tail)
    if replica:
        params["replica"] = replica
    to = target(url, token)
    try:
        with (
            api_client(to, timeout=None) as client,
            client.stream("GET", f"/v1/inference-service/{service_id}/logs", params=params) as r,
        ):
            if r.status_code != 200:
                r.read()
                fail_with(r, to)
            for chunk in r.iter_bytes():
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        err.print(f"[red]error:[/red] {escape(unreachable(to, exc))}")
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        pass
