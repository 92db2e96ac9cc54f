"""How ``moorage serve`` and ``moorage gateway`` log: one line per record, text or JSON.

``MOORAGE_LOG_FORMAT=json`` gives one JSON object per line, for log shippers:
``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and every field a
record carries in ``extra`` (``endpoint_id``, ``replica_id``, ``event``, ...),
so a machine filters by id without parsing the sentence.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(levelname)s:     %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


# Characters that end a line or drive a terminal: C0 and C1 controls, DEL, the Unicode
# line and paragraph separators (``str.splitlines`` and some viewers break on them),
# and the bidirectional overrides that reorder what a reader sees.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape(text: str) -> str:
    """``text`` with every line break and control character written visibly (``\\n``,
    ``\\x1b``), so what a replica printed or a user named cannot start a line of its own
    or move a terminal's cursor."""
    return _UNSAFE.sub(_shown, text)


class TextFormatter(logging.Formatter):
    """The text format, one line per record whatever the message holds: replica output,
    names and reasons reach the log inside messages, and a replica that prints a newline
    and a line of its own must not forge a record. A traceback keeps its lines."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        message = record.message
        record.message = escape(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # json.dumps escapes C0 controls but writes DEL, C1 controls and the Unicode
        # line separators as they are; they are only ever inside strings, where
        # \\uXXXX is their JSON spelling.
        return _UNSAFE.sub(
            lambda m: f"\\u{ord(m.group()):04x}", json.dumps(entry, ensure_ascii=False)
        )


def configure(log_format: LogFormat = "text") -> None:
    """Sends INFO and above to stderr in ``log_format``, replacing earlier handlers."""
    handler = logging.StreamHandler()
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
