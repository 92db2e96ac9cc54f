"""The ``moorage`` command: the server (``serve``, ``gateway``) and, through the public
API, everything a user does with endpoints.

Whatever goes wrong is one line on stderr, never a traceback: a traceback's source
lines and locals could show a token, and a person reads one line."""

from __future__ import annotations

import typer

from moorage.cli import (
    api,
    apply,
    controller,
    endpoints,
    flavors,
    gateway,
    login,
    logs,
    serve,
    tokens,
    usage,
)
from moorage.cli.common import err
from moorage.cli.shown import line

app = typer.Typer(
    name="moorage",
    help="Dedicated inference endpoints on your own machines.",
    no_args_is_help=True,
    add_completion=False,
    # Never a traceback with locals (a token may be one of them).
    pretty_exceptions_enable=False,
)
app.command(name="serve")(serve.serve)
app.command(name="api")(api.api)
app.command(name="controller")(controller.controller)
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
    """The command; an exception no command expected becomes ``error: TYPE: MESSAGE``
    and exit 1, an interrupt exit 130."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:  # the last place one can be caught
        err.print(line(("error:", "red"), f" {type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
