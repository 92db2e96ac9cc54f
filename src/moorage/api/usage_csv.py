"""``GET /v1/usage`` as CSV, for a spreadsheet: the JSON answer's rows, one line each
under a header line, costs as the same 6-place decimal strings. The totals are left
out, so that summing a column gives them and no line is counted twice."""

from __future__ import annotations

import csv
import io
import unicodedata

from moorage.models.flavors import CURRENCIES
from moorage.services.usage import UsageReport, costs_of

__all__ = ["CSV_MEDIA_TYPE", "HEADER", "render_csv", "wants_csv"]

CSV_MEDIA_TYPE = "text/csv"
HEADER = (
    "key",
    "name",
    "is_deleted",
    "instance_seconds",
    "gpu_seconds",
    *(f"cost_{currency}" for currency in CURRENCIES),
)


def wants_csv(accept: str | None) -> bool:
    """Whether ``Accept`` prefers ``text/csv`` to JSON: CSV is answered only when asked
    for by name and ranked above ``application/json`` (by q, then by order)."""
    if not accept:
        return False
    ranked: dict[str, tuple[float, int]] = {}
    for position, part in enumerate(accept.split(",")):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranked.setdefault(media.lower(), (quality, -position))
    csv_rank = ranked.get(CSV_MEDIA_TYPE)
    if csv_rank is None or csv_rank[0] <= 0:
        return False
    json_rank = ranked.get("application/json", (0.0, 0))
    return csv_rank > json_rank


# A cell a spreadsheet would run as a formula (OWASP's CSV injection): an endpoint's
# name is its owner's text, and the admin may open everyone's in one sheet.
# ``|`` starts a DDE call in older spreadsheets. Invisible characters before them
# (a byte order mark, a zero-width or no-break space, a control character) are
# skipped by some spreadsheets, so they do not hide one.
_FORMULA_STARTS = ("=", "+", "-", "@", "|", "\t", "\r", "\n")
_INVISIBLE = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp", "Mn", "Me"})
# Letters and symbols drawn as nothing (Hangul fillers, the blank Braille pattern).
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _cell(text: str) -> str:
    """``text``, with a ``'`` in front when a spreadsheet would read it as a formula."""
    visible = text.lstrip("".join(c for c in set(text) if _is_invisible(c)))
    return "'" + text if visible.startswith(_FORMULA_STARTS) else text


def _is_invisible(char: str) -> bool:
    if char in "\t\r\n":
        return False
    return char in _BLANK or unicodedata.category(char) in _INVISIBLE


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def render_csv(report: UsageReport) -> str:
    """The report's rows as CSV (``\\r\\n`` line ends, as RFC 4180 and the csv module
    write them); ``name`` and ``is_deleted`` are empty but for ``group_by=endpoint``,
    and a name a spreadsheet would take for a formula starts with ``'``."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for row in report.rows:
        costs = costs_of(row.total)
        writer.writerow(
            (
                row.total.key,
                _cell(row.name or ""),
                _flag(row.is_deleted),
                row.total.instance_seconds,
                row.total.gpu_seconds,
                *(costs[currency] for currency in CURRENCIES),
            )
        )
    return out.getvalue()
