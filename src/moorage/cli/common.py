"""What every client command shares: ``--url`` and ``--token``, the SDK client built
from them, and one way to fail: the server's message and code on one line of stderr
and exit 1; 2 for a usage error or no server to call; never a traceback. An answer
that is not what the API sends (not JSON, the wrong shape, an empty redirect) is one
line too, naming the server.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from moorage.api.schemas import Endpoint
from moorage.cli.shown import line
from moorage.sdk import ApiError, Client
from moorage.sdk.errors import NO_TOKEN, UNREACHABLE, MoorageError
from moorage.sdk.target import Target, unknown_token_hint

NOT_FOUND = 404
# soft_wrap: a message is one line, never cut at 80 columns in the middle of a URL.
err = Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="moorage's URL [MOORAGE_URL; else `moorage login`'s; else this host at "
        "MOORAGE_PORT, 8080].",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="API token [MOORAGE_TOKEN; else `moorage login`'s; else the admin's, beside "
        "the server].",
        show_default=False,
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(line(("error:", "red"), f" {message}"))
    raise typer.Exit(code)


def unreadable(exc: ValidationError | json.JSONDecodeError) -> str:
    """What was wrong with an answer, in a few words (never the answer itself: it
    may be long, or hostile)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg}"
    problems = exc.errors(include_url=False, include_input=False)
    first = problems[0] if problems else {"loc": (), "msg": str(exc.title)}
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def report_api_error(exc: ApiError, target: Target | None) -> NoReturn:
    """The server's refusal as one line (status, code, message); a 401 also says which
    server and which token were tried. No server, or no token: exit 2."""
    if exc.status == 0:
        fail(exc.message, 2 if exc.code in (UNREACHABLE, NO_TOKEN) else 1)
    err.print(line((f"error ({exc.status}) {exc.code}:", "red"), f" {exc.message}"))
    if exc.status == 401 and target is not None:
        err.print(line(unknown_token_hint(target)))
    raise typer.Exit(1)


def check_scheme(url: str | None) -> None:
    """Exit 2 when the URL named on the command line (``--url``) or in MOORAGE_URL has
    no ``http://`` or ``https://``: ``127.0.0.1:8080`` is a typo the CLI can name,
    before any call fails on it."""
    given, source = (url, "--url") if url else (os.environ.get("MOORAGE_URL"), "MOORAGE_URL")
    if not given or given.lower().startswith(("http://", "https://")):
        return
    if "://" in given:
        fail(f"{source} {given}: moorage is reached over http:// or https://", 2)
    fail(f"{source} {given}: add http:// (http://{given})", 2)


@contextmanager
def connect(url: str | None, token: str | None, *, timeout: float = 30.0) -> Iterator[Client]:
    """An SDK client for the target the options, the environment and the config file
    name (``None``: not given, look further); any ``ApiError`` inside becomes one line
    on stderr and an exit code."""
    check_scheme(url)
    client: Client | None = None
    try:
        client = Client(url=url, token=token, timeout=timeout)
        with client:
            yield client
    except ApiError as exc:
        report_api_error(exc, client.target if client is not None else None)
    except MoorageError as exc:  # a config file that is not TOML, and such
        fail(exc.message, 2)
    except (ValidationError, json.JSONDecodeError) as exc:
        where = client.url if client is not None else "that URL"
        fail(f"the server at {where} answered something moorage cannot read ({unreadable(exc)})")
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def find(client: Client, ref: str) -> Endpoint:
    """The caller's endpoint with the id or exact name ``ref``. Found by neither, the
    error gives the server's own answer for the id and says no name matched either."""
    try:
        return client.find_endpoint(ref)
    except ApiError as exc:
        if exc.status != NOT_FOUND:
            raise
        try:
            client.get_endpoint(ref)
        except ApiError as by_id:
            if by_id.status == NOT_FOUND:
                raise ApiError(
                    by_id.status,
                    by_id.code,
                    f"{by_id.message}; nor is any endpoint of yours named {ref!r} "
                    "(`moorage ls` lists them)",
                ) from None
        raise


def interactive() -> bool:
    return sys.stdin.isatty()
