"""How read commands print what the API answered: a Rich table for a person, or the
API's own JSON (``-o json``) or the same data as YAML (``-o yaml``) for a script.

The JSON is the response model dumped as the server sends it, so a script that
reads ``-o json`` reads what ``curl`` would have shown.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel
from rich.console import Console, RenderableType
from rich.style import StyleType
from rich.table import Table

from moorage.cli.shown import plain as plain_text
from moorage.cli.shown import visible

# Piped (to grep, a file), a table is as wide as its rows: ids are never folded. What
# it prints is the server's data: never markup, never an emoji code.
out = Console(
    soft_wrap=True,
    width=None if sys.stdout.isatty() else 10_000,
    markup=False,
    emoji=False,
)


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    Format,
    typer.Option("--output", "-o", help="table (for people), json (the API's), or yaml."),
]


def plain(data: BaseModel | Sequence[BaseModel] | dict[str, Any] | list[Any]) -> Any:
    """The data as the API's JSON has it (models dumped as the server dumps them)."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", by_alias=True)
    if isinstance(data, list | tuple):
        return [plain(item) for item in data]
    return data


def as_json(data: Any) -> str:
    """The JSON, its control and bidi characters written as ``\\uXXXX`` escapes: the
    same JSON to a parser, nothing a terminal acts on (JSON's own line breaks stay)."""
    return visible(json.dumps(plain(data), indent=2, ensure_ascii=False), line_breaks=True)


def as_yaml(data: Any, *, terminal: bool = False) -> str:
    """The YAML; for a terminal, every character past ASCII escaped (the same data
    to a parser), since YAML writes bidi controls and U+0085 as they are."""
    return yaml.safe_dump(plain(data), sort_keys=False, allow_unicode=not terminal)


def show(data: Any, fmt: Format, table: Callable[[], Table | str]) -> None:
    """Prints ``data`` in ``fmt``; ``table`` builds the table only when one is asked for."""
    if fmt is Format.json:
        print(as_json(data))
    elif fmt is Format.yaml:
        print(as_yaml(data, terminal=sys.stdout.isatty()), end="")
    else:
        out.print(table())


def cell(value: Any) -> str:
    """A table cell: ``-`` for nothing, the text otherwise."""
    if value is None or value == "":
        return "-"
    return str(value)


# A value longer than this (a 10 KB command) is cut in a table: one long cell would
# pad every row of the table to its width.
SHOWN_CHARS = 200


def shortened(value: str, limit: int = SHOWN_CHARS) -> str:
    """``value``, or its first ``limit`` characters and how many more ``-o json``
    shows."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... ({len(value) - limit} more characters; -o json shows all)"


class PlainTable(Table):
    """A table whose string cells are plain text with their controls made visible:
    what the server sent is shown, never read as markup."""

    def add_row(
        self,
        *renderables: RenderableType | None,
        style: StyleType | None = None,
        end_section: bool = False,
    ) -> None:
        cells = [plain_text(r) if isinstance(r, str) else r for r in renderables]
        super().add_row(*cells, style=style, end_section=end_section)


def new_table(*columns: str) -> Table:
    table = PlainTable(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table
