"""``moorage apply -f endpoint.yaml``: make the endpoint of that name what the file
says. None of that name: create it. One: show what would change (``field: old ->
new``), and change it with one PUT only if something differs; then wait as create
does. Run twice, the second says "no changes".

Without a terminal to confirm on, changes to an existing endpoint need ``--yes``: a
script that meant to create must not silently change a running endpoint.
"""

from __future__ import annotations

from typing import Annotated

import typer

from moorage.cli import diff
from moorage.cli.common import TokenOption, UrlOption, connect, err, fail, find, interactive
from moorage.cli.endpoints import with_flavor_id
from moorage.cli.files import read_body
from moorage.cli.output import plain
from moorage.cli.shown import line
from moorage.cli.waiting import DEFAULT_TIMEOUT_S, NoWaitOption, TimeoutOption, settle
from moorage.sdk import ApiError

NOT_FOUND = 404


def apply(
    file: Annotated[
        str,
        typer.Option(
            "--file",
            "-f",
            help="The API's create body as YAML or JSON (- for stdin).",
            metavar="FILE",
        ),
    ],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Change an existing endpoint without asking.")
    ] = False,
    no_wait: NoWaitOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Create the endpoint the file describes, or change the one of its name to match."""
    desired = read_body(file)
    name = desired.get("name")
    if not isinstance(name, str) or not name:
        fail(f"{file}: name: required (apply finds the endpoint by it)", 2)
    with connect(url, token) as client:
        desired = with_flavor_id(client, desired)
        try:
            current = find(client, name)
        except ApiError as exc:
            if exc.status != NOT_FOUND:
                raise
            created = client.create_endpoint(desired)
            err.print(line(f"created {created.name} ({created.service_id})"))
            print(created.service_id, flush=True)
            settle(client, created, wait=not no_wait, timeout=timeout, changed=True)
            return
        found = diff.changes(desired, plain(current))
        if not found:
            err.print(line(f"{name} ({current.service_id}): no changes"))
            print(current.service_id, flush=True)
            return
        err.print(line(f"{name} ({current.service_id}) changes:"))
        for change in found:
            err.print(line("  ", ("~", "yellow"), " ", change.describe()))
        if not yes:
            if not interactive():
                fail("changes to an existing endpoint need --yes when no terminal can confirm", 2)
            if not typer.confirm("Apply these changes?", default=False, err=True):
                fail("nothing changed", 1)
        updated = client.update_endpoint(current.service_id, diff.patch(desired, found))
        err.print(line(f"updated {updated.name} ({updated.service_id})"))
        print(updated.service_id, flush=True)
        settle(
            client,
            updated,
            wait=not no_wait,
            timeout=timeout,
            revision=updated.deploy_metadata.revision,
            changed=True,
        )
