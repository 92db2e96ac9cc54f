"""Text that came from elsewhere (the server, a replica's output, a file), made safe to
show on a terminal: never read as Rich markup, and no character in it can drive the
terminal or reorder what is shown.

A hostile tenant names endpoints and writes what its replicas print; an operator
reads both in tables. So every such string reaches Rich as a plain ``Text`` (no
``[link=...]``, no ``[/bold]`` crash), and C0 and C1 control characters, DEL, Unicode
bidi controls and line and paragraph separators are shown as ``\\u001b``: visible, one
form, nothing a terminal acts on. A tab stays; a line break stays only where asked.
"""

from __future__ import annotations

from rich.text import Text

# Bidi embeddings, overrides and isolates, and the marks: they reorder what follows.
_BIDI = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_SEPARATORS = frozenset([0x2028, 0x2029])


def _hidden(code: int) -> bool:
    """Whether a terminal acts on the character, or it moves what is shown."""
    return code < 0x20 or 0x7F <= code <= 0x9F or code in _BIDI or code in _SEPARATORS


def visible(value: object, *, line_breaks: bool = False) -> str:
    """``value`` as text with every control character spelled ``\\uXXXX`` (a tab
    kept; ``\\n`` kept too when ``line_breaks``)."""
    text = str(value)
    if not any(_hidden(ord(ch)) for ch in text):
        return text
    kept = {0x09, 0x0A} if line_breaks else {0x09}
    return "".join(
        f"\\u{ord(ch):04x}" if _hidden(ord(ch)) and ord(ch) not in kept else ch for ch in text
    )


def plain(value: object, style: str = "", *, line_breaks: bool = False) -> Text:
    """``value`` as Rich text that is never markup, its controls made visible."""
    return Text(visible(value, line_breaks=line_breaks), style=style)


def line(*parts: str | tuple[str, str]) -> Text:
    """One message from parts: a string is shown as is (made visible), a ``(text,
    style)`` pair is styled, e.g. ``line(("error:", "red"), " ", message)``."""
    out = Text()
    for part in parts:
        if isinstance(part, tuple):
            out.append(visible(part[0]), style=part[1])
        else:
            out.append(visible(part))
    return out
