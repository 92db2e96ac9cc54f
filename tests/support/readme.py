"""The README's shell commands, read from its code blocks, so tests run what a reader runs."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def section(heading: str, text: str | None = None) -> str:
    """The README's text from the line ``heading`` to the next heading of its level or above."""
    text = README.read_text() if text is None else text
    lines = text.splitlines(keepends=True)
    level = len(heading) - len(heading.lstrip("#"))
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    assert start is not None, f"README.md has no heading {heading!r}"
    end = len(lines)
    for i in range(start + 1, len(lines)):
        match = re.match(r"^(#+) ", lines[i])
        if match and len(match.group(1)) <= level:
            end = i
            break
    return "".join(lines[start:end])


def shell_commands(text: str) -> list[str]:
    """Every command of the ``sh`` blocks in ``text``, in order: backslash-continued lines
    joined, comments after `` # `` and blank lines dropped (a quoted argument may span
    lines: a line that leaves a quote open joins the next)."""
    commands: list[str] = []
    for block in _BLOCK.findall(text):
        pending = ""
        for line in block.splitlines():
            if not pending and not line.strip():
                continue
            pending += line + "\n"
            if line.endswith("\\") or pending.count("'") % 2:
                continue
            command = pending.replace("\\\n", " ").strip()
            commands.append(re.sub(r"\s+#\s.*$", "", command))
            pending = ""
        assert not pending, f"an unfinished command in README.md: {pending!r}"
    return commands
