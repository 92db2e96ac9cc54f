"""``moorage logs ID``: what an endpoint's replicas print, optionally followed."""

from __future__ import annotations

import sys
from typing import Annotated

import httpx
import typer

from moorage.cli.client import api_client, err, fail_with


def logs(
    service_id: Annotated[str, typer.Argument(help="The endpoint's service_id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output.")
    ] = False,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines of each replica.")] = None,
    replica: Annotated[str | None, typer.Option(help="Only this replica (id or prefix).")] = None,
    url: Annotated[str | None, typer.Option(help="moorage's URL [MOORAGE_URL].")] = None,
    token: Annotated[str | None, typer.Option(help="API token [MOORAGE_TOKEN].")] = None,
) -> None:
    """Print the replicas' stdout and stderr."""
    params: dict[str, str] = {"follow": str(follow).lower()}
    if tail is not None:
        params["tail"] = str(tail)
    if replica:
        params["replica"] = replica
    try:
        with (
            api_client(url, token, timeout=None) as client,
            client.stream("GET", f"/v1/inference-service/{service_id}/logs", params=params) as r,
        ):
            if r.status_code != 200:
                r.read()
                fail_with(r)
            for chunk in r.iter_bytes():
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
    except httpx.ConnectError as exc:
        err.print(f"[red]error:[/red] cannot reach moorage ({exc}); is `moorage serve` running?")
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        pass
