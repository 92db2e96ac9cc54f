"""Reading an endpoint file (``-f``): the API's create body as YAML or JSON (JSON is
YAML), one mapping, bounded in size; an error names the file and what is wrong.

A file may come from anyone (a repository, a colleague), so reading it is bounded:
at most 1 MiB, and no YAML anchors or aliases, which is how a few hundred bytes
expand into gigabytes ("billion laughs"). Loading stays safe: no Python tags."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from moorage.cli.common import fail

MAX_FILE_BYTES = 1024 * 1024
NO_ALIASES = "YAML anchors and aliases are not allowed in an endpoint file"


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader, refusing an anchor (``&a``) or an alias (``*a``) where it
    meets one, before anything is expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.constructor.ConstructorError(None, None, NO_ALIASES, event.start_mark)
        return super().compose_node(parent, index)


def parse_body(text: str, where: str) -> dict[str, Any]:
    """The mapping in ``text``; raises ValueError saying what is wrong otherwise."""
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # a safe loader: no Python tags
    except yaml.constructor.ConstructorError as exc:
        if exc.problem == NO_ALIASES:
            mark = exc.problem_mark
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise ValueError(f"{where}: {NO_ALIASES}{at}") from exc
        raise ValueError(f"{where} is neither YAML nor JSON: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{where} is neither YAML nor JSON: {exc}") from exc
    except RecursionError:
        raise ValueError(f"{where} nests too deeply to be an endpoint file") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{where} must hold one mapping (the API's create body: name, resource_metadata, "
            f"deploy_metadata, ...), not {type(data).__name__}"
        )
    return {str(key): value for key, value in data.items()}


def _size(path: str) -> str:
    """How large the file is, as far as can be told without reading it all."""
    try:
        return f"{Path(path).stat().st_size} bytes" if path != "-" else "more than 1 MiB"
    except OSError:
        return "more than 1 MiB"


def read_body(path: str) -> dict[str, Any]:
    """The file at ``path`` (``-`` for stdin), parsed; exits 2 naming the problem."""
    where = "stdin" if path == "-" else path
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with Path(path).open("rb") as file:
                raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        fail(f"cannot read {where}: {exc.strerror or exc}", 2)
    if len(raw) > MAX_FILE_BYTES:
        limit = f"at most 1 MiB ({MAX_FILE_BYTES} bytes)"
        fail(f"{where} is {_size(path)}; an endpoint file is {limit}", 2)
    try:
        return parse_body(raw.decode("utf-8"), where)
    except UnicodeDecodeError:
        fail(f"{where} is not UTF-8 text", 2)
    except ValueError as exc:
        fail(str(exc), 2)
