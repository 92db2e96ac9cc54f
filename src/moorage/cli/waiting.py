"""Waiting after a change until the endpoint serves, as ``create``, ``update``,
``scale``, ``start`` and ``apply`` do unless told ``--no-wait``: progress while it
comes up, the server's reason and exit 1 when it will not."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from moorage.api.schemas import Endpoint
from moorage.cli.common import err
from moorage.cli.progress import (
    Reporter,
    elapsed_text,
    failure_text,
    left_behind_text,
    ready_text,
    status_line,
    still_retrying,
)
from moorage.cli.shown import line
from moorage.sdk import Client, WaitFailed, WaitTimeout

NoWaitOption = Annotated[
    bool, typer.Option("--no-wait", help="Return once the server took the change.")
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout", min=1, max=86_400, help="Seconds to wait for the endpoint to be available."
    ),
]
DEFAULT_TIMEOUT_S = 900.0


def settle(
    client: Client,
    endpoint: Endpoint,
    *,
    wait: bool,
    timeout: float,
    revision: int | None = None,
    changed: bool = False,
) -> Endpoint:
    """Waits (unless ``wait`` is false) until ``endpoint`` is available, with replicas
    of ``revision`` (a PUT's) when given, showing its progress on stderr; exits 1 with
    the reason if it fails or the time runs out. ``changed``: the wait follows a create
    or an update, so a failure says that the endpoint stays (billed, retried) and how
    to fix or remove it."""
    if not wait:
        err.print(
            line(
                f"{endpoint.name} ({endpoint.service_id}): {endpoint.status}, "
                f"{ready_text(endpoint)}; not waiting (`moorage endpoints get "
                f"{endpoint.service_id}` shows how it goes)"
            )
        )
        return endpoint
    reporter = Reporter(live=err.is_terminal and sys.stderr.isatty())
    reporter(endpoint)
    try:
        with reporter.showing(err):
            done = client.wait_until_available(
                endpoint.service_id, timeout=timeout, revision=revision, on_progress=reporter
            )
    except WaitFailed as exc:
        err.print(line(("error:", "red"), " ", failure_text(exc.endpoint, exc.message)))
        if changed and still_retrying(exc.endpoint):
            err.print(line(left_behind_text(exc.endpoint)))
        raise typer.Exit(1) from None
    except WaitTimeout as exc:
        err.print(
            line(
                ("error:", "red"),
                f" not available after {elapsed_text(timeout)}: "
                f"{status_line(exc.endpoint, timeout)}; it goes on starting: "
                f"`moorage endpoints get {exc.endpoint.service_id}` shows how it goes",
            )
        )
        raise typer.Exit(1) from None
    err.print(
        line(
            f"{done.name} is available ({ready_text(done)}): {done.endpoint_metadata.endpoint_url}"
        )
    )
    return done
