"""The ``moorage`` command."""

from __future__ import annotations

import typer

from moorage.cli import gateway, logs, serve, tokens

app = typer.Typer(
    name="moorage",
    help="Dedicated inference endpoints on your own machines.",
    no_args_is_help=True,
    add_completion=False,
)
app.command(name="serve")(serve.serve)
app.command(name="gateway")(gateway.gateway)
app.command(name="logs")(logs.logs)
app.add_typer(tokens.app, name="tokens")


def main() -> None:
    app()
