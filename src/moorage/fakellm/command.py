"""The replica command that runs the fake LLM server from its own source.

A replica (a sandboxed process or a ``python:3.10-slim`` container) has no moorage
installed, so the command carries ``server.py`` itself, compressed and base64-encoded,
and runs it with ``python3 -c``; settings follow as flags. It stays well under the
default per-user command quota (16 KiB).
"""

from __future__ import annotations

import ast
import base64
import shlex
import zlib
from dataclasses import fields
from pathlib import Path

from moorage.fakellm.server import Settings

SOURCE = Path(__file__).with_name("server.py")
SETTINGS = frozenset(field.name for field in fields(Settings))


def compact(source: str) -> str:
    """``source`` without docstrings or comments (a fifth smaller once compressed)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            first = body[0].value
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.unparse(tree)


def fake_llm_command(python: str = "python3", **settings: str | int | float) -> str:
    """``exec python3 -c "..." --max-num-seqs 2 ...``; ``--port`` defaults to ``$PORT``.

    Unknown settings raise ``ValueError`` naming them and the allowed ones."""
    unknown = sorted(set(settings) - SETTINGS)
    if unknown:
        raise ValueError(f"unknown fake LLM settings {unknown}; allowed: {sorted(SETTINGS)}")
    packed = base64.b64encode(zlib.compress(compact(SOURCE.read_text()).encode(), 9)).decode()
    program = f"import base64,zlib;exec(zlib.decompress(base64.b64decode('{packed}')))"
    flags = "".join(
        f" --{name.replace('_', '-')} {shlex.quote(str(value))}" for name, value in settings.items()
    )
    return f'exec {shlex.quote(python)} -c "{program}"{flags}'
