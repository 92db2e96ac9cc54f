"""``moorage gateway``: a standalone gateway, fed by the control plane or a route file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from moorage.cli.shown import line
from moorage.errors import MoorageError
from moorage.gateway.http1.limits import WireLimits
from moorage.logformat import LogFormat

_DEFAULTS = WireLimits()


def _limit(envvar: str, help: str) -> Any:
    """An option for one of the gateway's wire limits, read from the same
    ``MOORAGE_GATEWAY_*`` variable as ``moorage serve``'s setting."""
    return typer.Option(envvar=envvar, help=help, min=0)


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
    max_url_bytes: Annotated[
        int, _limit("MOORAGE_GATEWAY_MAX_URL_BYTES", "Longest request line (414 past it).")
    ] = _DEFAULTS.max_url_bytes,
    max_header_bytes: Annotated[
        int, _limit("MOORAGE_GATEWAY_MAX_HEADER_BYTES", "Longest header line (431 past it).")
    ] = _DEFAULTS.max_header_bytes,
    max_head_bytes: Annotated[
        int, _limit("MOORAGE_GATEWAY_MAX_HEAD_BYTES", "Largest request head (431 past it).")
    ] = _DEFAULTS.max_head_bytes,
    max_body_bytes: Annotated[
        int, _limit("MOORAGE_GATEWAY_MAX_BODY_BYTES", "Largest request body (413 past it).")
    ] = _DEFAULTS.max_body_bytes,
    retry_buffer_bytes: Annotated[
        int,
        _limit("MOORAGE_GATEWAY_RETRY_BUFFER_BYTES", "Largest body kept for a replay."),
    ] = _DEFAULTS.retry_buffer_bytes,
    header_timeout_s: Annotated[
        float, _limit("MOORAGE_GATEWAY_HEADER_TIMEOUT_S", "Seconds for a request head (408).")
    ] = _DEFAULTS.header_timeout_s,
    body_timeout_s: Annotated[
        float,
        _limit("MOORAGE_GATEWAY_BODY_TIMEOUT_S", "Longest pause inside a request body (408)."),
    ] = _DEFAULTS.body_timeout_s,
    max_connections: Annotated[
        int,
        _limit(
            "MOORAGE_GATEWAY_MAX_CONNECTIONS",
            "Open client connections per worker (503 past it); 0: from the open-file limit.",
        ),
    ] = _DEFAULTS.max_connections,
    max_connections_per_client: Annotated[
        int,
        _limit(
            "MOORAGE_GATEWAY_MAX_CONNECTIONS_PER_CLIENT",
            "Open connections from one address per worker (503 past it); 0: a quarter.",
        ),
    ] = _DEFAULTS.max_connections_per_client,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            envvar="MOORAGE_LOG_FORMAT",
            help="text: one line per record for people; json: one JSON object per line.",
        ),
    ] = "text",
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
        line(
            ("moorage gateway", "bold"),
            f" on http://{host}:{port}  ({workers} worker"
            f"{'s' if workers > 1 else ''}, routes from {source})",
        )
    )
    limits = WireLimits(
        max_url_bytes=max_url_bytes,
        max_header_bytes=max_header_bytes,
        max_head_bytes=max_head_bytes,
        max_body_bytes=max_body_bytes,
        retry_buffer_bytes=retry_buffer_bytes,
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
    )
    # Loaded here, not at import: every other command starts without the gateway.
    from moorage.gateway import standalone

    config = standalone.GatewayConfig(
        host,
        port,
        workers,
        routes,
        control_plane,
        token,
        limits=limits,
        log_format=log_format,
    )
    try:
        standalone.run(config)
    except MoorageError as exc:
        err.print(line(("error:", "red"), f" {exc.message}"))  # it quotes the file
        raise typer.Exit(2) from exc
    except OSError as exc:
        err.print(
            line(
                ("error:", "red"),
                f" cannot listen on {host}:{port} ({exc.strerror}); pick another with --port",
            )
        )
        raise typer.Exit(2) from exc
