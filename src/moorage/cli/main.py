"""The ``moorage`` command: the server (``serve``, ``gateway``) and, through the public
API, everything a user does with endpoints."""

from __future__ import annotations

import typer

from moorage.cli import apply, endpoints, flavors, gateway, login, logs, serve, tokens, usage

app = typer.Typer(
    name="moorage",
    help="Dedicated inference endpoints on your own machines.",
    no_args_is_help=True,
    add_completion=False,
)
app.command(name="serve")(serve.serve)
app.command(name="gateway")(gateway.gateway)
app.command(name="login")(login.login)
app.command(name="logout")(login.logout)
app.add_typer(endpoints.app, name="endpoints")
app.command(name="ls", help="List your endpoints (endpoints list).")(endpoints.list_)
app.command(name="apply")(apply.apply)
app.command(name="flavors")(flavors.flavors)
app.command(name="logs")(logs.logs)
app.command(name="usage")(usage.usage)
app.add_typer(tokens.app, name="tokens")


def main() -> None:
    app()
