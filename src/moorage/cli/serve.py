"""``moorage serve``: API, controller and gateway in one process."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from moorage import logformat
from moorage.cli.shown import line
from moorage.errors import MoorageError
from moorage.settings import Settings

err = Console(stderr=True)
log = logging.getLogger("moorage.serve")


def _describe_store(url: str) -> str:
    return "SQLite" if url.startswith("sqlite") else url.split("://", 1)[0].split("+")[0]


def _port_taken(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or None. Checked before anything is
    created or printed: a server that cannot listen must not issue an admin token."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host!r} ({exc.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As the gateway listens: a port left in TIME_WAIT by a previous run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "the port is already in use"
            return exc.strerror or str(exc)
    return None


def announce(
    settings: Settings,
    runtime: str,
    generated: str | None,
    *,
    what: str = "moorage",
    role: str = "API /v1, gateway /inference-api",
) -> None:
    """Says where moorage listens and keeps its data: a banner for a person, or with
    ``MOORAGE_LOG_FORMAT=json`` one record like every other line of the log, so a log
    shipper parses each line. A generated admin token goes to stdout alone either way."""
    base = f"http://{settings.host}:{settings.port}"
    home = settings.home.resolve()
    store = _describe_store(settings.resolved_database_url)
    engine = {"docker": f" ({settings.docker_host})", "ray": f" ({settings.ray_address})"}.get(
        runtime, ""
    )
    token_file = settings.admin_token_file.resolve()
    if settings.log_format == "json":
        fields = {"url": base, "home": str(home), "store": store, "runtime": runtime + engine}
        log.info("%s on %s (%s, docs /docs)", what, base, role, extra=fields)
        if generated:
            log.info(
                "admin token generated: shown once on stdout, kept in %s (mode 0600)", token_file
            )
        elif settings.admin_token is None:
            log.info("admin token: in %s", token_file)
    else:
        err.print(line((what, "bold"), f" on {base}  ({role}, docs /docs)"))
        err.print(line(f"  data: {home}  store: {store}  runtime: {runtime}{engine}"))
        if generated:
            err.print(line(f"  admin token (shown once; also kept in {token_file}, mode 0600):"))
        elif settings.admin_token is None:
            err.print(line(f"  admin token: in {token_file}"))
    if generated:
        print(generated, flush=True)


def _fail(settings: Settings, message: str) -> None:
    """Says why moorage stopped, in the log's format once the log is set up."""
    if settings.log_format == "json":
        log.error("%s", message)
    else:
        err.print(line(("error:", "red"), f" {message}"))


def load_settings(given: dict[str, object]) -> Settings:
    """The settings, with the options given on the command line; a bad one is a usage
    error naming it."""
    overrides = {k: v for k, v in given.items() if v is not None}
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = first["loc"][0] if first["loc"] else "settings"
        err.print(line(("error:", "red"), f" {where}: {first['msg']}"))
        raise typer.Exit(2) from exc


def port_taken_or_exit(settings: Settings) -> None:
    taken = _port_taken(settings.host, settings.port)
    if taken is not None:
        err.print(
            line(
                ("error:", "red"),
                f" cannot listen on {settings.host}:{settings.port}: {taken}. "
                "Stop what uses it, or pick another port with --port or MOORAGE_PORT.",
            )
        )
        raise typer.Exit(2)


def start_failed(settings: Settings, exc: MoorageError) -> NoReturn:
    _fail(settings, exc.message)
    raise typer.Exit(2) from exc


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [MOORAGE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [MOORAGE_PORT].")] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="auto, process, docker or fake [MOORAGE_RUNTIME]; auto picks docker "
            "where an engine answers; fake keeps replicas in memory (benchmarks)."
        ),
    ] = None,
) -> None:
    """Run moorage: the API, the controller and the gateway, on one port."""
    # Imported here: `moorage gateway` shares this CLI and needs none of the server.
    from moorage import runner
    from moorage.composition import MoorageServer

    settings = load_settings({"host": host, "port": port, "runtime": runtime})
    port_taken_or_exit(settings)
    logformat.configure(settings.log_format)
    try:
        server = MoorageServer(settings)
        generated = server.prepare()
    except MoorageError as exc:
        _fail(settings, exc.message)
        raise typer.Exit(2) from exc
    announce(settings, server.runtime.name, generated)
    try:
        runner.run(server)
    except MoorageError as exc:
        _fail(settings, exc.message)
        raise typer.Exit(2) from exc
    except OSError as exc:
        _fail(
            settings,
            f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
            "pick another with --port or MOORAGE_PORT",
        )
        raise typer.Exit(2) from exc
