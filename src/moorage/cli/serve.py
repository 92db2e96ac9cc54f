"""``moorage serve``: API, controller and gateway in one process."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from moorage.errors import MoorageError
from moorage.settings import Settings

err = Console(stderr=True)


def _describe_store(url: str) -> str:
    return "SQLite" if url.startswith("sqlite") else url.split("://", 1)[0].split("+")[0]


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [MOORAGE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [MOORAGE_PORT].")] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="auto, process or docker [MOORAGE_RUNTIME]; auto picks docker "
            "where an engine answers."
        ),
    ] = None,
) -> None:
    """Run moorage: the API, the controller and the gateway, on one port."""
    # Imported here: `moorage gateway` shares this CLI and needs none of the server.
    from moorage import serving
    from moorage.server import MoorageServer

    given = {"host": host, "port": port, "runtime": runtime}
    overrides = {k: v for k, v in given.items() if v is not None}
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from exc
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    try:
        server = MoorageServer(settings)
        generated = server.prepare()
    except MoorageError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    base = f"http://{settings.host}:{settings.port}"
    err.print(f"[bold]moorage[/bold] on {base}  (API /v1, gateway /inference-api, docs /docs)")
    err.print(
        f"  data: {settings.home.resolve()}  store: "
        f"{_describe_store(settings.resolved_database_url)}  runtime: {server.runtime.name}"
        + (f" ({settings.docker_host})" if server.runtime.name == "docker" else "")
    )
    if generated:
        err.print(
            "  admin token (shown once; also kept in "
            f"{settings.admin_token_file.resolve()}, mode 0600):"
        )
        print(generated, flush=True)
    elif settings.admin_token is None:
        err.print(f"  admin token: in {settings.admin_token_file.resolve()}")
    try:
        serving.run(server, settings.host, settings.port)
    except MoorageError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    except OSError as exc:
        err.print(
            f"[red]error:[/red] cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
            "pick another with --port or MOORAGE_PORT"
        )
        raise typer.Exit(2) from exc
