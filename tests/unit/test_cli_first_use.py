"""What a user meets first with the CLI, without a server: a long command shown short,
progress lines when the server's reason changes, the live line's time first, the
usage and flavors columns, and the mistakes refused as usage errors (exit 2) before
any call: a URL with no scheme, a date the server cannot read."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from moorage.api.account_schemas import UsageOut
from moorage.api.schemas import Endpoint, FlavorList
from moorage.cli.endpoints import endpoint_table
from moorage.cli.flavors import flavors_table
from moorage.cli.main import app
from moorage.cli.progress import Reporter, live_line
from moorage.cli.usage import usage_table
from tests.support.endpoint_objects import endpoint_object


def rendered(table: Table, width: int = 10_000) -> str:
    console = Console(file=io.StringIO(), width=width, soft_wrap=True, color_system=None)
    console.print(table)
    output = console.file
    assert isinstance(output, io.StringIO)
    return output.getvalue()


def with_command(command: str, args: list[str] | None = None) -> Endpoint:
    e = endpoint_object()
    deploy = e.deploy_metadata.model_copy(update={"command": command, "args": args or []})
    return e.model_copy(update={"deploy_metadata": deploy})


# -- a long command --------------------------------------------------------------------


def test_a_long_command_is_shortened_and_no_row_is_padded_to_its_width() -> None:
    command = "x" * 9_500
    text = rendered(endpoint_table(with_command(command, ["a" * 5_000])))
    assert "x" * 200 + "... (9300 more characters; -o json shows all)" in text
    assert "... (4800 more characters; -o json shows all)" in text
    assert "x" * 201 not in text
    assert max(len(row) for row in text.splitlines()) < 400


def test_a_short_command_is_shown_whole() -> None:
    assert "sh -c 'serve'" in rendered(endpoint_table(with_command("sh -c 'serve'")))


# -- progress ----------------------------------------------------------------------------


def test_without_a_terminal_a_new_reason_from_the_server_is_a_line() -> None:
    stream = io.StringIO()
    now = [0.0]
    reporter = Reporter(live=False, stream=stream, clock=lambda: now[0])
    for seconds, info in [
        (0, "starting the process (0 s)"),
        (1, "starting the process (1 s)"),  # only its clock: no line
        (12, "starting the process (12 s)"),
        (13, "the app listens on 18123, not on $PORT 50861 (13 s)"),
        (14, "the app listens on 18123, not on $PORT 50861 (14 s)"),
    ]:
        now[0] = seconds
        reporter(endpoint_object(status="initializing", info=info, wanted=1))
    assert stream.getvalue().splitlines() == [
        "web: initializing, 0/1 ready, starting the process (0 s) (0s)",
        "web: initializing, 0/1 ready, the app listens on 18123, not on $PORT 50861 (13 s) (13s)",
    ]


def test_the_live_line_starts_with_the_time_and_wraps_rather_than_losing_the_advice() -> None:
    e = endpoint_object(info="the app listens on 18123, not on $PORT 50861", wanted=1)
    assert live_line(e, 12) == (
        "web 12s: initializing, 0/1 ready: the app listens on 18123, not on $PORT 50861"
    )
    screen = io.StringIO()
    # The CLI's stderr console never wraps a message; the live line wraps all the same.
    console = Console(file=screen, force_terminal=True, width=40, soft_wrap=True)
    reporter = Reporter(live=True, stream=io.StringIO(), clock=lambda: 0.0)
    reporter(e)
    with reporter.showing(console):
        reporter(e)
    assert "$PORT 50861" in screen.getvalue()


# -- tables ------------------------------------------------------------------------------


def test_usage_columns_say_what_they_count() -> None:
    row = {
        "instance_seconds": 1,
        "gpu_seconds": 0,
        "cost": {"usd": "1.000000", "cny": "0.000000", "nmt": "0.000000"},
    }
    report = UsageOut.model_validate(
        {
            "from": "2026-01-01 00:00:00",
            "to": "2026-02-01 00:00:00",
            "group_by": "endpoint",
            "user_id": None,
            "rows": [{**row, "key": "s1", "name": "web", "is_deleted": False}],
            "totals": row,
        }
    )
    header = rendered(usage_table(report)).splitlines()[0].split()
    assert header[:4] == ["KEY", "NAME", "INSTANCE-SECONDS", "GPU-SECONDS"]


def test_flavors_show_every_currencys_price() -> None:
    flavor = {
        "flavor_id": "cpu",
        "display_name": "CPU",
        "cluster_id": "c",
        "cluster_flavor_id": "c",
        "meta_info": {},
        "billing": {"usd_price_unit": 1, "cny_price_unit": 7, "nmt_price_unit": 42},
        "created_at": None,
        "updated_at": None,
        "deleted_at": None,
        "is_deleted": False,
        "available_num": 1,
        "node_max_gpu": 0,
    }
    text = rendered(flavors_table(FlavorList.model_validate({"flavor_list": [flavor]})))
    header, row = text.splitlines()[:2]
    assert "NMT/H" in header.split()
    assert row.split()[4:7] == ["1.0", "7.0", "42.0"]


# -- usage errors, before any call ---------------------------------------------------------


# No server listens here: a usage error exits 2 before trying it.
NOWHERE = {"MOORAGE_TOKEN": "mrg_x", "MOORAGE_CLIENT_CONFIG": "/nonexistent/config.toml"}


@pytest.mark.parametrize("args", [("ls",), ("login", "--token", "mrg_x")])
def test_a_url_without_a_scheme_is_a_usage_error_naming_the_fix(args: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*args, "--url", "127.0.0.1:18080"], env=NOWHERE)
    assert result.exit_code == 2, result.stderr
    assert "--url 127.0.0.1:18080: add http:// (http://127.0.0.1:18080)" in result.stderr
    assert "cannot reach" not in result.stderr


def test_moorage_url_without_a_scheme_is_named() -> None:
    result = CliRunner().invoke(app, ["ls"], env={**NOWHERE, "MOORAGE_URL": "localhost:8080"})
    assert result.exit_code == 2, result.stderr
    assert "MOORAGE_URL localhost:8080: add http:// (http://localhost:8080)" in result.stderr


@pytest.mark.parametrize("option", ["--from", "--to"])
def test_usage_with_a_date_the_server_cannot_read_is_a_usage_error(option: str) -> None:
    env = {**NOWHERE, "MOORAGE_URL": "http://127.0.0.1:9"}
    result = CliRunner().invoke(app, ["usage", option, "yesterday"], env=env)
    assert result.exit_code == 2, result.stderr
    assert f"{option} 'yesterday': must be an ISO 8601 date (2026-01-31)" in result.stderr


def test_delete_with_no_terminal_needs_yes() -> None:
    env = {**NOWHERE, "MOORAGE_URL": "http://127.0.0.1:9"}
    result = CliRunner().invoke(app, ["endpoints", "delete", "web"], env=env)
    assert result.exit_code == 2, result.stderr
    assert "--yes" in result.stderr


# -- --help ----------------------------------------------------------------------------


def help_of(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_help_names_the_arguments_as_a_user_writes_them() -> None:
    """Typer writes types its own way (``<str>``); the arguments' names are ours."""
    scale = help_of("endpoints", "scale")
    usage_line = next(row for row in scale.splitlines() if "Usage:" in row)
    assert "ENDPOINT" in usage_line
    assert "REPLICAS" in usage_line
    assert "``" not in help_of("logout")
    assert "`moorage login`" in help_of("logout")


def test_a_bad_integer_is_typers_usage_error_naming_the_parameter() -> None:
    result = CliRunner().invoke(app, ["endpoints", "scale", "web", "abc"], env=NOWHERE)
    assert result.exit_code == 2
    assert "'REPLICAS'" in result.output
