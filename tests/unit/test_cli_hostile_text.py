"""What the CLI shows of strings it did not write (the server's, a replica's output, a
file's): never read as Rich markup, no control character that a terminal acts on,
no bidi control that reorders a table; an unexpected exception is one line; an
endpoint file with YAML anchors, or over 1 MiB, is refused at once.

Tables are rendered as on a colour terminal, where a markup link would be written
as an OSC 8 hyperlink."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from moorage.api.account_schemas import UsageOut
from moorage.api.schemas import EndpointPage, EventPage, FlavorList, TokenList
from moorage.cli import common, main
from moorage.cli.endpoints import endpoint_table, endpoints_table, events_table
from moorage.cli.files import NO_ALIASES, parse_body
from moorage.cli.flavors import flavors_table
from moorage.cli.output import as_json, as_yaml
from moorage.cli.progress import Reporter
from moorage.cli.shown import visible
from moorage.cli.tokens import tokens_table
from moorage.cli.usage import usage_table
from moorage.sdk import Client
from tests.support.endpoint_objects import endpoint_object

LINK = "[link=http://evil.example/]click[/link][bold red]R[/]"
CONTROLS = "\x1b]0;title\x07\x1b]52;c;ZXZpbA==\x07\x1b[2J\x9b2J\x85"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
HOSTILE = LINK + "[conceal]hidden[/conceal]" + CONTROLS + BIDI + "\u2028\u2029"
# What a terminal would act on; Rich's own colours (ESC [ ... m) are the only escapes left.
ACTING = ["\x07", "\x1b]", "\x1b[2J", "\x9b", "\x85", *BIDI, "\u2028", "\u2029"]


def rendered(table: Table) -> str:
    console = Console(file=io.StringIO(), force_terminal=True, width=1000, color_system="truecolor")
    console.print(table)
    output = console.file
    assert isinstance(output, io.StringIO)
    return output.getvalue()


def assert_shown_not_obeyed(text: str) -> None:
    for acting in ACTING:
        assert acting not in text, (acting, text)
    assert "\x1b]8;" not in text  # no hyperlink
    assert LINK in text  # the brackets as sent
    assert "\\u001b]0;title\\u0007" in text


# -- the one visible form ---------------------------------------------------------------


def test_controls_are_spelled_out_and_text_is_kept() -> None:
    assert visible("plain, tab\tand ünïcødé 中文") == "plain, tab\tand ünïcødé 中文"
    assert visible("a\x1b[31mb\x9bc\x7f\x00") == "a\\u001b[31mb\\u009bc\\u007f\\u0000"
    assert visible("RLO\u202ex\u2028y") == "RLO\\u202ex\\u2028y"
    assert visible("one\ntwo\r") == "one\\u000atwo\\u000d"
    assert visible("one\ntwo\r", line_breaks=True) == "one\ntwo\\u000d"


# -- every table ------------------------------------------------------------------------


def hostile_endpoint() -> Any:
    e = endpoint_object(status="unavailable", info=HOSTILE, replicas=[("failed", 1, HOSTILE)])
    return e.model_copy(
        update={
            "name": HOSTILE,
            "deploy_metadata": e.deploy_metadata.model_copy(
                update={"command": HOSTILE, "image_url": HOSTILE}
            ),
        }
    )


def test_endpoint_tables_show_names_and_output_as_text() -> None:
    e = hostile_endpoint()
    page = endpoints_table(EndpointPage(service_list=[e], total=1, page=1, page_size=100))
    assert_shown_not_obeyed(rendered(page))
    one = rendered(endpoint_table(e))
    assert_shown_not_obeyed(one)
    assert "[conceal]hidden[/conceal]" in one


def test_a_closing_tag_alone_does_not_crash_a_table() -> None:
    e = endpoint_object().model_copy(update={"name": "[/bold]"})
    assert "[/bold]" in rendered(endpoint_table(e))


def test_events_table() -> None:
    event = {
        "time": "2026-01-01 00:00:00",
        "kind": "failed",
        "replica_id": "1" * 32,
        "revision": 1,
        "reason": None,
        "detail": HOSTILE,
        "message": HOSTILE,
    }
    page = EventPage.model_validate({"event_list": [event], "total": 1, "page": 1, "page_size": 20})
    assert_shown_not_obeyed(rendered(events_table(page)))


def usage_report(name: str) -> UsageOut:
    cost = {"usd": "1.000000", "cny": "0.000000", "nmt": "0.000000"}
    row = {"instance_seconds": 1, "gpu_seconds": 0, "cost": cost}
    return UsageOut.model_validate(
        {
            "from": "2026-01-01 00:00:00",
            "to": "2026-02-01 00:00:00",
            "group_by": "endpoint",
            "user_id": None,
            "rows": [{**row, "key": "s1", "name": name, "is_deleted": True}],
            "totals": row,
        }
    )


def test_usage_table_of_every_tenant_shows_their_names_as_text() -> None:
    assert_shown_not_obeyed(rendered(usage_table(usage_report(HOSTILE))))
    assert "[/bold] (deleted)" in rendered(usage_table(usage_report("[/bold]")))


def test_flavors_and_tokens_tables() -> None:
    flavor = {
        "flavor_id": HOSTILE,
        "display_name": HOSTILE,
        "cluster_id": "c",
        "cluster_flavor_id": "c",
        "meta_info": {"k": HOSTILE},
        "billing": {"usd_price_unit": 1, "cny_price_unit": 1, "nmt_price_unit": 1},
        "created_at": None,
        "updated_at": None,
        "deleted_at": None,
        "is_deleted": False,
        "available_num": 1,
        "node_max_gpu": 0,
    }
    flavors = FlavorList.model_validate({"flavor_list": [flavor]})
    assert_shown_not_obeyed(rendered(flavors_table(flavors)))
    token = {
        "token_id": "t1",
        "user_id": "u1",
        "name": HOSTILE,
        "prefix": "mrg_",
        "created_at": None,
        "revoked_at": None,
        "is_revoked": False,
    }
    tokens = TokenList.model_validate({"token_list": [token]})
    assert_shown_not_obeyed(rendered(tokens_table(tokens)))


# -- -o json and yaml ---------------------------------------------------------------------


def test_json_keeps_the_data_and_escapes_every_control() -> None:
    e = hostile_endpoint()
    text = as_json(e)
    for acting in ACTING:
        assert acting not in text
    assert json.loads(text)["name"] == HOSTILE


def test_yaml_for_a_terminal_escapes_what_yaml_would_write_as_is() -> None:
    import yaml

    e = hostile_endpoint()
    text = as_yaml(e, terminal=True)
    for acting in ACTING:
        assert acting not in text
    assert yaml.safe_load(text)["name"] == HOSTILE
    assert yaml.safe_load(as_yaml(e))["name"] == HOSTILE


# -- lines and messages -----------------------------------------------------------------


def capture(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=1000, soft_wrap=True)
    monkeypatch.setattr(common, "err", console)
    return stream


def test_an_error_message_is_one_line_of_text(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = capture(monkeypatch)
    with pytest.raises(typer.Exit):
        common.fail("no endpoint named " + HOSTILE + "\nerror: forged second line")
    text = stream.getvalue()
    assert_shown_not_obeyed(text)
    assert text.count("\n") == 1


def test_progress_lines_without_a_terminal_show_controls(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    reporter = Reporter(live=False, stream=stream, clock=lambda: 0.0)
    reporter(endpoint_object(info=HOSTILE))
    assert_shown_not_obeyed(stream.getvalue())


def test_an_unexpected_exception_is_one_line_without_locals(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(self: Client, **_: Any) -> Any:
        secret = "t-very-secret"  # a local a traceback would show
        raise RuntimeError(f"boom\x1b]0;x\x07 {len(secret)}")

    monkeypatch.setattr(Client, "list_endpoints", broken)
    monkeypatch.setenv("MOORAGE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MOORAGE_TOKEN", "t-very-secret")
    monkeypatch.setattr(sys, "argv", ["moorage", "ls"])
    assert main.app.pretty_exceptions_enable is False
    with pytest.raises(SystemExit) as exited:
        main.main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err == "error: RuntimeError: boom\\u001b]0;x\\u0007 13\n"


def test_an_interrupt_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(self: Client, **_: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Client, "list_endpoints", interrupted)
    monkeypatch.setenv("MOORAGE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MOORAGE_TOKEN", "t")
    monkeypatch.setattr(sys, "argv", ["moorage", "ls"])
    with pytest.raises(SystemExit) as exited:
        main.main()
    assert exited.value.code == 130


# -- endpoint files -----------------------------------------------------------------------

BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]"
            for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "name: web",
    ]
)


def test_a_yaml_bomb_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    started = time.monotonic()
    result = CliRunner().invoke(main.app, ["apply", "-f", str(path)])
    assert time.monotonic() - started < 2
    assert result.exit_code == 2
    assert NO_ALIASES in result.output
    assert f"{path}: {NO_ALIASES} (line 1, column 4)" in result.output
    started = time.monotonic()
    result = CliRunner().invoke(main.app, ["endpoints", "create", "-f", str(path)])
    assert time.monotonic() - started < 2
    assert result.exit_code == 2
    assert NO_ALIASES in result.output


def test_one_alias_is_refused_too_and_loading_stays_safe() -> None:
    with pytest.raises(ValueError, match=NO_ALIASES):
        parse_body("a: &x 1\nb: *x\n", "f.yaml")
    with pytest.raises(ValueError, match="neither YAML nor JSON"):
        parse_body("a: !!python/object/apply:os.system ['true']\n", "f.yaml")
    assert parse_body('{"name": "web", "n": [1, 2]}', "f.json") == {"name": "web", "n": [1, 2]}


def test_a_file_over_1_mib_is_refused_naming_its_size(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a" * (1024 * 1024 + 10))
    result = CliRunner().invoke(main.app, ["apply", "-f", str(path)])
    assert result.exit_code == 2
    assert "is 1048586 bytes; an endpoint file is at most 1 MiB" in result.output


def test_a_file_nested_too_deeply_is_a_usage_error_not_a_crash() -> None:
    with pytest.raises(ValueError, match="nests too deeply"):
        parse_body("name: " + "[" * 100_000 + "]" * 100_000, "deep.yaml")
