"""Formats the reference API fixes on the wire: ids and timestamps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def new_id() -> str:
    """A 32-character lowercase hex id, the shape the reference uses everywhere."""
    return uuid.uuid4().hex


def format_timestamp(moment: datetime | None) -> str | None:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, or ``None`` for an absent moment."""
    return None if moment is None else timestamp(moment)


def timestamp(moment: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC (a naive moment is taken as UTC): the one format
    of every time the API answers (``api.schemas.Timestamp``)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC)
    # Not strftime's %Y, which writes year 999 as "999" on glibc, not "0999".
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    )
