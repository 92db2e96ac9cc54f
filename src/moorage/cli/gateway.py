"""``moorage gateway``: a standalone gateway, fed by the control plane or a route file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from moorage.errors import MoorageError
from moorage.gateway import standalone

err = Console(stderr=True)


def gateway(
    control_plane: Annotated[
        str | None,
        typer.Option(
            envvar="MOORAGE_CONTROL_PLANE",
            help="URL of the moorage server whose route table to serve, e.g. http://cp:8000.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="MOORAGE_GATEWAY_TOKEN",
            help="An admin token of that server (also guards this gateway's /metrics).",
        ),
    ] = None,
    routes: Annotated[
        Path | None,
        typer.Option(help="Serve a fixed route table from this JSON file instead."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    workers: Annotated[
        int, typer.Option(min=1, max=256, help="Processes sharing the port (SO_REUSEPORT).")
    ] = 1,
) -> None:
    """Run the gateway alone: /inference-api/... to replicas, nothing else."""
    if (control_plane is None) == (routes is None):
        err.print(
            "[red]error:[/red] give either --control-plane URL (with --token) or --routes FILE"
        )
        raise typer.Exit(2)
    if control_plane is not None and not token:
        err.print(
            "[red]error:[/red] --token (or MOORAGE_GATEWAY_TOKEN) is needed to read the "
            "route table: the admin token `moorage serve` printed at its first start (or its "
            "MOORAGE_ADMIN_TOKEN)"
        )
        raise typer.Exit(2)
    source = f"route file {routes}" if routes else f"control plane {control_plane}"
    err.print(
        f"[bold]moorage gateway[/bold] on http://{host}:{port}  ({workers} worker"
        f"{'s' if workers > 1 else ''}, routes from {source})"
    )
    config = standalone.GatewayConfig(host, port, workers, routes, control_plane, token)
    try:
        standalone.run(config)
    except MoorageError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    except OSError as exc:
        err.print(
            f"[red]error:[/red] cannot listen on {host}:{port} ({exc.strerror}); "
            "pick another with --port"
        )
        raise typer.Exit(2) from exc
