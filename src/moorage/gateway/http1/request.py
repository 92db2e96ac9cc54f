"""A request as the client sent it, and the head the gateway sends a replica for it."""

from __future__ import annotations

import re

from moorage.gateway.http1 import wire

# Past this much request body held while no replica is attached, stop reading the client.
BUFFER_LIMIT = 1 << 20
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
# Safe methods change nothing on the server: sent again after a reset by default, as
# nginx's proxy_next_upstream does (a replica's node dying mid-request loses none).
_SAFE = frozenset({b"GET", b"HEAD", b"OPTIONS"})
# Headers that say where one message ends and the next begins. ``Connection`` may not
# name them: a proxy that dropped one but forwarded the body would let the body be read
# as the next request on a pooled connection (request smuggling).
FRAMING = frozenset({b"content-length", b"transfer-encoding", b"host"})
# Never copied from the client: hop-by-hop, and the framing the gateway writes itself.
_NOT_COPIED = wire.HOP_BY_HOP | {b"content-length"}


# A request may ask to be held longer or shorter than its endpoint's
# cold_start_timeout_s while a replica starts from zero, up to an hour.
COLD_START_HEADER = b"x-moorage-cold-start-timeout"
MAX_COLD_START_S = 3600


_SECONDS = re.compile(rb"[0-9]{1,4}(\.[0-9]{1,3})?")


def _seconds(value: bytes) -> float | None:
    """Plain decimal seconds, such as ``30`` or ``2.5``: no sign, exponent or ``_``."""
    value = value.strip(b" \t")
    if not _SECONDS.fullmatch(value):
        return None
    seconds = float(value)
    return seconds if seconds <= MAX_COLD_START_S else None


class Request:
    """What the client asked, as parsed; header names are lower-cased."""

    __slots__ = (
        "authorization",
        "authorization_given",
        "chunked",
        "cold_start_timeout_s",
        "connection_tokens",
        "content_length",
        "expect_continue",
        "headers",
        "host",
        "host_given",
        "http10",
        "keep_alive",
        "method",
        "problem",
        "retry_never",
        "retry_on_reset",
        "target",
        "upgrade",
        "upgrade_to",
    )

    def __init__(self) -> None:
        self.method = b"GET"
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self.http10 = False
        self.upgrade = False
        self.upgrade_to = b""
        self.content_length = -1  # no Content-Length header
        self.chunked = False
        self.expect_continue = False
        self.authorization = b""
        self.authorization_given = False
        self.host = b""
        self.host_given = False
        self.connection_tokens: frozenset[bytes] = frozenset()
        self.retry_on_reset = False
        self.retry_never = False
        # X-Moorage-Cold-Start-Timeout: how long it may be held while a replica starts.
        self.cold_start_timeout_s: float | None = None
        # Why the request must be refused with 400 (checked once its head is complete).
        self.problem = ""

    def add_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers.append((name, value))
        if name == b"authorization":
            # The API reads the first of several, a proxy may read the last: one
            # request could be checked as one caller and served as another.
            if self.problem == "" and self.authorization_given:
                self.problem = "send exactly one Authorization header, not several"
            self.authorization = value
            self.authorization_given = True
        elif name == b"host":
            if self.problem == "" and self.host_given:
                self.problem = "send exactly one Host header, not several"
            self.host = value
            self.host_given = True
        elif name == b"content-length":
            # The parser refuses a second differing Content-Length itself, and reads
            # the value with its optional whitespace (RFC 9110 section 5.5) stripped:
            # so must this, or the body it frames would go upstream unannounced.
            digits = value.strip(b" \t")
            if digits.isdigit():
                self.content_length = int(digits)
            else:
                self.content_length = 0
                self.problem = self.problem or "Content-Length must be a decimal number"
        elif name == b"transfer-encoding":
            self.chunked = b"chunked" in value.lower()
        elif name == b"expect":
            self.expect_continue = value.lower() == b"100-continue"
        elif name == b"connection":
            # A list header: several Connection lines add up (RFC 9110 section 5.3).
            self.connection_tokens |= wire.connection_tokens(value)
            self.upgrade = b"upgrade" in self.connection_tokens
            named = self.connection_tokens & FRAMING
            if named:
                self.problem = (
                    f"Connection may not name {b', '.join(sorted(named)).decode()}: "
                    "the gateway frames every message itself"
                )
        elif name == b"upgrade":
            self.upgrade_to = value
        elif name == b"x-moorage-retry-on":
            self.retry_on_reset = b"reset" in value.lower()
            self.retry_never = value.strip().lower() == b"none"
        elif name == COLD_START_HEADER:
            given_twice = self.cold_start_timeout_s is not None
            self.cold_start_timeout_s = _seconds(value)
            if given_twice:
                self.problem = self.problem or "send one X-Moorage-Cold-Start-Timeout, not several"
            elif self.cold_start_timeout_s is None:
                shown = value[:32].decode("ascii", "replace")
                self.problem = self.problem or (
                    f"X-Moorage-Cold-Start-Timeout must be seconds from 0 to "
                    f"{MAX_COLD_START_S} in plain digits (such as 30 or 2.5), got {shown!r}"
                )

    @property
    def has_body(self) -> bool:
        return self.chunked or self.content_length > 0

    @property
    def replayable(self) -> bool:
        """May be sent again after it reached a replica: a safe method (GET, HEAD,
        OPTIONS) unless the client said ``X-Moorage-Retry-On: none``, or another
        idempotent one (PUT, DELETE) when it opted in with ``X-Moorage-Retry-On:
        reset``. The exchange also drops the copy of a body past the retry buffer
        (``WireLimits.retry_buffer_bytes``)."""
        if self.upgrade or self.retry_never:
            return False
        return self.method in _SAFE or (self.retry_on_reset and self.method in _IDEMPOTENT)

    def upstream_head(
        self, target: bytes, host: bytes, dropped: frozenset[bytes], peer: bytes
    ) -> bytes:
        """The request head for the replica: hop-by-hop headers (and ``dropped``) removed,
        ``X-Forwarded-*`` added. The framing is the gateway's: ``Content-Length`` and
        ``Transfer-Encoding`` are written from what the parser reads, never copied."""
        parts = [self.method, b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
        forwarded_for = peer
        proto = host_seen = False
        skip = self.connection_tokens
        for name, value in self.headers:
            if name in dropped or name in _NOT_COPIED or name in skip:
                continue
            if name == b"x-forwarded-for":
                forwarded_for = value + b", " + peer
                continue
            if name == b"x-forwarded-proto":
                proto = True
            elif name == b"x-forwarded-host":
                host_seen = True
            elif name == b"expect":
                continue  # the gateway answers 100-continue itself
            parts += [name, b": ", value, b"\r\n"]
        parts += [b"x-forwarded-for: ", forwarded_for, b"\r\n"]
        if not proto:
            parts.append(b"x-forwarded-proto: http\r\n")
        if not host_seen and self.host:
            parts += [b"x-forwarded-host: ", self.host, b"\r\n"]
        if self.chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        elif self.content_length >= 0:
            parts += [b"content-length: ", b"%d" % self.content_length, b"\r\n"]
        if self.upgrade:
            parts += [b"connection: upgrade\r\nupgrade: ", self.upgrade_to, b"\r\n"]
        parts.append(b"\r\n")
        return b"".join(parts)
