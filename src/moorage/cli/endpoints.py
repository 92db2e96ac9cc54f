"""``moorage endpoints``: create, list, read, change, scale, stop, start and delete
endpoints, and read their events, through the public API.

An ENDPOINT argument is a ``service_id`` or the exact name of one of the caller's
endpoints. Commands that change what runs wait until it serves (``--no-wait`` not to).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from moorage.api.schemas import Endpoint, EndpointPage, EventPage
from moorage.cli.bodies import create_body, update_body
from moorage.cli.common import (
    TokenOption,
    UrlOption,
    connect,
    err,
    fail,
    find,
    interactive,
)
from moorage.cli.files import read_body
from moorage.cli.output import Format, OutputOption, cell, new_table, shortened, show
from moorage.cli.progress import ready_text
from moorage.cli.shown import line, plain, visible
from moorage.cli.waiting import DEFAULT_TIMEOUT_S, NoWaitOption, TimeoutOption, settle
from moorage.models.states import EndpointStatus
from moorage.sdk import Client

app = typer.Typer(help="Create, list, change and delete endpoints.", no_args_is_help=True)

EndpointArg = Annotated[
    str,
    typer.Argument(
        metavar="ENDPOINT", help="The endpoint's service_id, or the exact name of one of yours."
    ),
]
FileOption = Annotated[
    str | None,
    typer.Option(
        "--file", "-f", help="The API's create body as YAML or JSON (- for stdin).", metavar="FILE"
    ),
]
EnvOption = Annotated[
    list[str] | None,
    typer.Option("--env", "-e", help="An environment variable, NAME=VALUE (repeat for more)."),
]
PageOption = Annotated[int, typer.Option("--page", min=1, help="Which page.")]
PageSizeOption = Annotated[int, typer.Option("--page-size", min=1, max=100, help="Per page.")]
# resource_metadata.scale_type of an endpoint the autoscaler sizes.
AUTO = "auto"


# -- tables -------------------------------------------------------------------------


def endpoints_table(page: EndpointPage) -> Table:
    table = new_table("NAME", "SERVICE ID", "STATUS", "READY", "FLAVOR", "IMAGE", "CREATED")
    for e in page.service_list:
        table.add_row(
            e.name,
            e.service_id,
            e.status,
            f"{e.endpoint_metadata.ready_replicas}/{e.resource_metadata.target_instance_number}",
            cell(e.resource_metadata.resource_display_name or e.resource_metadata.flavor_id),
            e.deploy_metadata.image_url,
            cell(e.created_at),
        )
    shown_to = (page.page - 1) * page.page_size + len(page.service_list)
    if page.total > shown_to:
        table.caption = f"{len(page.service_list)} of {page.total}; --page {page.page + 1} for more"
    return table


def endpoint_table(e: Endpoint) -> Table:
    table = new_table("FIELD", "VALUE")
    flavor_name = e.resource_metadata.resource_display_name or e.resource_metadata.flavor_id
    # A replica's last output may span lines; those breaks are kept, nothing else.
    rows: list[tuple[str, str | Text]] = [
        ("name", e.name),
        ("service_id", e.service_id),
        ("status", e.status),
        ("status_info", plain(cell(e.status_info), line_breaks=True)),
        ("replicas", ready_text(e)),
        ("scale_type", e.resource_metadata.scale_type),
        ("flavor", cell(flavor_name)),
        ("image", shortened(e.deploy_metadata.image_url)),
        ("command", shortened(cell(e.deploy_metadata.command))),
        ("port", str(e.deploy_metadata.port)),
        ("gpus", str(e.deploy_metadata.gpu_num)),
        ("revision", str(e.deploy_metadata.revision)),
        ("url", e.endpoint_metadata.endpoint_url),
        ("payment_type", e.payment_type),
        ("price_per_hour", str(e.billing_metadata.price_per_hour)),
        ("cost_so_far", str(e.billing_metadata.cost_so_far)),
        ("created_at", cell(e.created_at)),
        ("updated_at", cell(e.updated_at)),
    ]
    if e.deploy_metadata.args:
        rows.append(("args", shortened(" ".join(e.deploy_metadata.args))))
    if e.deploy_metadata.env:
        rows.append(("env", ", ".join(sorted(e.deploy_metadata.env))))
    for replica in e.endpoint_metadata.replicas:
        state = f"{replica.state} (revision {replica.revision})"
        if replica.last_failure:
            state += f": {replica.last_failure}"
        rows.append((f"replica {replica.replica_id[:8]}", plain(state, line_breaks=True)))
    for field, value in rows:
        table.add_row(field, value)
    return table


def events_table(page: EventPage) -> Table:
    table = new_table("TIME", "KIND", "REPLICA", "MESSAGE")
    for event in page.event_list:
        table.add_row(
            cell(event.time), str(event.kind), cell((event.replica_id or "")[:8]), event.message
        )
    shown_to = (page.page - 1) * page.page_size + len(page.event_list)
    if page.total > shown_to:
        table.caption = f"newest first; {page.total} in all; --page {page.page + 1} for older"
    return table


# -- commands -----------------------------------------------------------------------


def flavor_id_for(client: Client, flavor: str | None) -> str:
    """``--flavor`` as an id or a display name; without one, the first flavor listed."""
    flavors = client.list_flavors()
    if not flavors:
        fail("the server offers no flavor; its admin configures them")
    if flavor is None:
        return flavors[0].flavor_id
    for candidate in flavors:
        if flavor in (candidate.flavor_id, candidate.display_name):
            return candidate.flavor_id
    names = ", ".join(f.display_name or f.flavor_id for f in flavors)
    fail(f"--flavor: no flavor {flavor!r}; this server has: {names} (see `moorage flavors`)", 2)


def with_flavor_id(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with ``resource_metadata.flavor_id`` given as a flavor's name (``CPU``)
    replaced by its id, so that one file serves on any server; anything else as is."""
    resource = body.get("resource_metadata")
    if not isinstance(resource, dict) or not isinstance(resource.get("flavor_id"), str):
        return body
    flavors = client.list_flavors()
    wanted = resource["flavor_id"]
    if any(f.flavor_id == wanted for f in flavors):
        return body
    named = [f.flavor_id for f in flavors if f.display_name == wanted]
    if len(named) != 1:
        return body  # the server names what is wrong
    return {**body, "resource_metadata": {**resource, "flavor_id": named[0]}}


@app.command()
def create(
    file: FileOption = None,
    name: Annotated[str | None, typer.Option(help="The endpoint's name.")] = None,
    image: Annotated[str | None, typer.Option(help="The image (image_url).")] = None,
    command: Annotated[
        str | None, typer.Option(help="Run as `sh -c COMMAND`; without, the image as built.")
    ] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="The app's port.")] = 8080,
    flavor: Annotated[
        str | None,
        typer.Option(help="Flavor id or name (default: the first listed)."),
    ] = None,
    replicas: Annotated[int, typer.Option(min=0, help="Replicas to run.")] = 1,
    gpus: Annotated[int, typer.Option(min=0, help="GPUs per replica.")] = 0,
    env: EnvOption = None,
    payment_type: Annotated[
        str | None, typer.Option("--payment-type", help="usd, cny or nmt (default: usd).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="A description.")] = None,
    no_wait: NoWaitOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Create an endpoint from flags or a file (-f), wait until it serves, and print its
    service_id on stdout."""
    if file is not None:
        given = [n for n, v in (("--name", name), ("--image", image), ("--command", command)) if v]
        if given or env:
            fail(f"-f takes the whole body from the file; leave out {', '.join(given)}", 2)
        from_file = read_body(file)
    elif name is None or image is None:
        fail("give --name and --image (or -f FILE)", 2)
    with connect(url, token) as client:
        if file is not None:
            body = with_flavor_id(client, from_file)
        else:
            assert name is not None
            assert image is not None
            try:
                body = create_body(
                    name=name,
                    image=image,
                    command=command,
                    port=port,
                    flavor_id=flavor_id_for(client, flavor),
                    replicas=replicas,
                    gpus=gpus,
                    env=env or [],
                    payment_type=payment_type,
                    description=description,
                )
            except ValueError as exc:
                fail(str(exc), 2)
        endpoint = client.create_endpoint(body)
        err.print(line(f"created {endpoint.name} ({endpoint.service_id})"))
        print(endpoint.service_id, flush=True)
        settle(client, endpoint, wait=not no_wait, timeout=timeout, changed=True)


@app.command("list")
def list_(
    output: OutputOption = Format.table,
    page: PageOption = 1,
    page_size: PageSizeOption = 100,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """List your endpoints."""
    with connect(url, token) as client:
        found = client.list_endpoints(page=page, page_size=page_size)
        show(found, output, lambda: endpoints_table(found))
        if output is Format.table and found.total == 0:
            err.print("no endpoints yet; `moorage endpoints create --help` says how to make one")


@app.command()
def get(
    endpoint: EndpointArg,
    output: OutputOption = Format.table,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show one endpoint: status, replicas, revision, URL, cost."""
    with connect(url, token) as client:
        found = find(client, endpoint)
        show(found, output, lambda: endpoint_table(found))


@app.command()
def update(
    endpoint: EndpointArg,
    file: Annotated[
        str | None,
        typer.Option("--file", "-f", help="A partial body (YAML or JSON): the fields to change."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    image: Annotated[str | None, typer.Option(help="A new image.")] = None,
    command: Annotated[str | None, typer.Option(help="A new command.")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="A new port.")] = None,
    flavor: Annotated[str | None, typer.Option(help="Another flavor (id or name).")] = None,
    replicas: Annotated[int | None, typer.Option(min=0, help="Replicas to run.")] = None,
    gpus: Annotated[int | None, typer.Option(min=0, help="GPUs per replica.")] = None,
    env: EnvOption = None,
    no_wait: NoWaitOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Change an endpoint (only what is given), then wait until it serves again."""
    with connect(url, token) as client:
        found = find(client, endpoint)
        try:
            changes = update_body(
                name=name,
                description=description,
                image=image,
                command=command,
                port=port,
                flavor_id=flavor_id_for(client, flavor) if flavor is not None else None,
                replicas=replicas,
                gpus=gpus,
                env=env or [],
            )
        except ValueError as exc:
            fail(str(exc), 2)
        if file is not None:
            changes = {**read_body(file), **changes}
        if not changes:
            fail("nothing to change: give -f FILE or a flag such as --replicas or --image", 2)
        updated = client.update_endpoint(found.service_id, changes)
        err.print(line(f"updated {updated.name} ({updated.service_id})"))
        settle(
            client,
            updated,
            wait=not no_wait,
            timeout=timeout,
            revision=updated.deploy_metadata.revision,
            changed=True,
        )


@app.command()
def scale(
    endpoint: EndpointArg,
    replicas: Annotated[
        int,
        typer.Argument(
            min=0, metavar="REPLICAS", help="How many replicas to run (0: stop the endpoint)."
        ),
    ],
    no_wait: NoWaitOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Run REPLICAS replicas, and wait until they serve. 0 stops a manual endpoint (it
    runs no replica when stopped); a stopped endpoint keeps the new count and stays
    stopped until `moorage endpoints start`."""
    with connect(url, token) as client:
        found = find(client, endpoint)
        if replicas == 0 and found.resource_metadata.scale_type != AUTO:
            err.print(
                line(f"a manual endpoint runs no replica when stopped: stopping {found.name}")
            )
            if found.status is EndpointStatus.STOPPED:
                err.print(line(f"{found.name} ({found.service_id}): already stopped"))
                return
            stopped = client.stop_endpoint(found.service_id)
            err.print(line(f"{stopped.name} ({stopped.service_id}): {stopped.status}"))
            return
        scaled = client.scale_endpoint(found.service_id, replicas)
        if scaled.status is EndpointStatus.STOPPED:
            err.print(
                line(
                    f"{scaled.name} will run {replicas} when started; it stays stopped until "
                    f"`moorage endpoints start {scaled.name}`"
                )
            )
            return
        err.print(line(f"scaling {scaled.name} to {replicas}"))
        settle(client, scaled, wait=not no_wait, timeout=timeout)


@app.command()
def stop(endpoint: EndpointArg, url: UrlOption = None, token: TokenOption = None) -> None:
    """Stop every replica; the endpoint and its settings stay (start brings it back)."""
    with connect(url, token) as client:
        stopped = client.stop_endpoint(find(client, endpoint).service_id)
        err.print(line(f"{stopped.name} ({stopped.service_id}): {stopped.status}"))


@app.command()
def start(
    endpoint: EndpointArg,
    no_wait: NoWaitOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Start a stopped endpoint, and wait until it serves."""
    with connect(url, token) as client:
        started = client.start_endpoint(find(client, endpoint).service_id)
        err.print(line(f"starting {started.name} ({started.service_id})"))
        settle(client, started, wait=not no_wait, timeout=timeout)


@app.command()
def delete(
    endpoint: EndpointArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delete an endpoint: its replicas stop and it is gone (its usage stays billed).
    Asks first on a terminal; without one, --yes is required."""
    if not yes and not interactive():
        fail(f"deleting {endpoint} needs --yes when no terminal can confirm", 2)
    with connect(url, token) as client:
        found = find(client, endpoint)
        if not yes and not typer.confirm(
            visible(f"delete {found.name} ({found.service_id})?"), default=False, err=True
        ):
            fail("nothing deleted", 1)
        deleted = client.delete_endpoint(found.service_id)
        err.print(line(f"deleted {deleted.name} ({deleted.service_id})"))


@app.command()
def events(
    endpoint: EndpointArg,
    output: OutputOption = Format.table,
    page: PageOption = 1,
    page_size: PageSizeOption = 20,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """What happened to an endpoint and why, newest first."""
    with connect(url, token) as client:
        found = client.list_events(find(client, endpoint).service_id, page, page_size)
        show(found, output, lambda: events_table(found))
