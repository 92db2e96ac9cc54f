"""Reading an endpoint file (``-f``): the API's create body as YAML or JSON (JSON is
YAML), one mapping, bounded in size; an error names the file and what is wrong."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from moorage.cli.common import fail

MAX_FILE_BYTES = 1024 * 1024


def parse_body(text: str, where: str) -> dict[str, Any]:
    """The mapping in ``text``; raises ValueError saying what is wrong otherwise."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{where} is neither YAML nor JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(
            f"{where} must hold one mapping (the API's create body: name, resource_metadata, "
            f"deploy_metadata, ...), not {type(data).__name__}"
        )
    return {str(key): value for key, value in data.items()}


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
        fail(f"{where} is larger than {MAX_FILE_BYTES} bytes; an endpoint file is smaller", 2)
    try:
        return parse_body(raw.decode("utf-8"), where)
    except UnicodeDecodeError:
        fail(f"{where} is not UTF-8 text", 2)
    except ValueError as exc:
        fail(str(exc), 2)
