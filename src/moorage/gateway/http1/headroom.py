"""Feeding a read to httptools with the message head counted before the parser sees it.

httptools joins a header's pieces itself, which costs quadratic time on a head sent
in small pieces, so both sides of the proxy (requests from clients, responses from
replicas) count the bytes of a head as they arrive and stop at ``max_head_bytes``.
A read that fits the room left is fed whole by the caller (one comparison, no
allocation); only a read longer than that room comes here, to be fed in pieces.
"""

from __future__ import annotations

from typing import Protocol

import httptools


class HeadCounted(Protocol):
    """A connection whose parser's callbacks set ``in_body`` (the head is complete)
    and, at a message's end, clear it and give ``head_room`` back."""

    head_room: int

    @property
    def parser(self) -> httptools.HttpRequestParser | httptools.HttpResponseParser: ...

    @property
    def in_body(self) -> bool: ...

    def head_too_long(self) -> Exception:
        """What to raise when a head does not end within its room."""
        ...


def feed_bounded(conn: HeadCounted, data: bytes) -> None:
    """Feeds the head's share of ``data``, then the rest once the head is complete (a
    body, or pipelined messages, which each get their own room). Raises
    ``conn.head_too_long()`` for a head longer than its room; an upgrade's offset is
    re-based onto ``data``, since the parser counts it into the piece it was fed."""
    view = memoryview(data)
    fed = 0
    try:
        while view:
            if conn.in_body or len(view) <= conn.head_room:
                if not conn.in_body:
                    conn.head_room -= len(view)
                conn.parser.feed_data(view)
                return
            piece, view = view[: conn.head_room], view[conn.head_room :]
            conn.head_room = 0
            conn.parser.feed_data(piece)
            fed += len(piece)
            if not conn.in_body and conn.head_room == 0:
                raise conn.head_too_long()
    except httptools.HttpParserUpgrade as upgrade:
        raise httptools.HttpParserUpgrade(fed + upgrade.args[0]) from None
