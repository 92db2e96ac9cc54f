"""HTTP/1.1 framing: status lines, chunks, hop-by-hop headers, the gateway's own answers."""

from __future__ import annotations

import json
from http import HTTPStatus

# Meaningful for one connection only (RFC 9110 section 7.6.1): never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason}\r\n".encode()
    return line


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """The header names a ``Connection`` header marks as hop-by-hop."""
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    close: bool,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    head_only: bool = False,
) -> bytes:
    """The gateway's own answer, in the API's ``{code, message}`` shape."""
    body = json.dumps({"code": code, "message": message}).encode()
    return plain_response(
        status,
        body,
        b"application/json",
        close=close,
        headers=headers,
        head_only=head_only,
    )


def plain_response(
    status: int,
    body: bytes,
    content_type: bytes,
    *,
    close: bool,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    head_only: bool = False,
) -> bytes:
    parts = [
        status_line(status),
        b"content-type: ",
        content_type,
        b"\r\ncontent-length: ",
        str(len(body)).encode(),
        b"\r\n",
    ]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)
