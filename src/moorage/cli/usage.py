"""``moorage usage``: billed seconds and costs over a window, by endpoint, day, flavor
or user, as a table, the API's JSON or YAML, or the server's CSV (``--csv``)."""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from moorage.api.account_schemas import UsageOut
from moorage.cli.common import TokenOption, UrlOption, connect, fail
from moorage.cli.output import Format, OutputOption, cell, new_table, show
from moorage.cli.shown import plain, visible

WHEN = "an ISO 8601 date (2026-01-31) or timestamp (2026-01-31T12:00:00Z)"


def check_when(option: str, value: str | None) -> None:
    """Exit 2 naming ``option`` unless ``value`` is what the server reads: a typo
    (``yesterday``) is the user's to fix, found before any call."""
    if value is None:
        return
    try:
        datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"{option} {value!r}: must be {WHEN}", 2)


class GroupBy(StrEnum):
    endpoint = "endpoint"
    day = "day"
    flavor = "flavor"
    user = "user"


def usage_table(report: UsageOut) -> Table:
    table = new_table("KEY", "NAME", "INSTANCE-SECONDS", "GPU-SECONDS", "USD", "CNY", "NMT")
    for row in report.rows:
        name = cell(row.name) + (" (deleted)" if row.is_deleted else "")
        table.add_row(
            row.key,
            name,
            str(row.instance_seconds),
            str(row.gpu_seconds),
            row.cost.usd,
            row.cost.cny,
            row.cost.nmt,
        )
    totals = report.totals
    table.add_section()
    table.add_row(
        "total",
        "",
        str(totals.instance_seconds),
        str(totals.gpu_seconds),
        totals.cost.usd,
        totals.cost.cny,
        totals.cost.nmt,
    )
    table.caption = plain(f"from {report.start} to {report.end} (UTC), by {report.group_by}")
    return table


def usage(
    from_: Annotated[
        str | None,
        typer.Option(
            "--from", help="Start, 2026-01-31 or an ISO time (default: this UTC month's)."
        ),
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="End, excluded (default: now).")] = None,
    group_by: Annotated[
        GroupBy, typer.Option("--group-by", help="One row per endpoint, day, flavor or user.")
    ] = GroupBy.endpoint,
    user: Annotated[
        str | None, typer.Option("--user", help="A user's id (the admin reads anyone's).")
    ] = None,
    csv: Annotated[bool, typer.Option("--csv", help="The server's CSV, as is.")] = False,
    output: OutputOption = Format.table,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Billed seconds and costs over [--from, --to)."""
    check_when("--from", from_)
    check_when("--to", to)
    with connect(url, token) as client:
        if csv:
            text = client.usage_csv(from_=from_, to=to, group_by=group_by.value, user_id=user)
            # Raw into a pipe or a file; on a terminal, its controls shown, not acted on.
            sys.stdout.write(visible(text, line_breaks=True) if sys.stdout.isatty() else text)
            sys.stdout.flush()
            return
        report = client.usage(from_=from_, to=to, group_by=group_by.value, user_id=user)
        show(report, output, lambda: usage_table(report))
