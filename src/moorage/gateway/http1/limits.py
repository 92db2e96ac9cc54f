"""The gateway's limits on what a client may send, and the refusals that name them.

Each limit has a default and a setting (``MOORAGE_*`` for ``moorage serve``, the same
name as an environment variable or option for ``moorage gateway``), so an operator
can change it. Limits are checked where bytes arrive, as counts: a big input is
refused once it passes its limit, before it costs memory or time.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1 << 10
MIB = 1 << 20


@dataclass(frozen=True)
class WireLimits:
    max_url_bytes: int = 16 * KIB
    max_header_bytes: int = 16 * KIB
    max_head_bytes: int = 64 * KIB
    max_body_bytes: int = 100 * MIB  # inference requests
    api_max_body_bytes: int = 1 * MIB  # requests to the API (moorage serve)
    retry_buffer_bytes: int = 1 * MIB
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0


class Refused(Exception):
    """Raised from a parser callback: the request breaks a limit or a framing rule."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def url_too_long(limits: WireLimits) -> Refused:
    return Refused(
        414,
        "url_too_long",
        f"the request line is longer than {limits.max_url_bytes} bytes "
        "(MOORAGE_GATEWAY_MAX_URL_BYTES); send large inputs in the body",
    )


def header_too_large(limits: WireLimits) -> Refused:
    return Refused(
        431,
        "header_too_large",
        f"a request header is longer than {limits.max_header_bytes} bytes "
        "(MOORAGE_GATEWAY_MAX_HEADER_BYTES); send large inputs in the body",
    )


def head_too_large(limits: WireLimits) -> Refused:
    return Refused(
        431,
        "headers_too_large",
        f"the request headers together are longer than {limits.max_head_bytes} bytes "
        "(MOORAGE_GATEWAY_MAX_HEAD_BYTES); send fewer or smaller headers",
    )


def body_too_large(limit: int, setting: str) -> tuple[int, str, str]:
    return (
        413,
        "body_too_large",
        f"the request body is larger than {limit} bytes ({setting}); send a smaller one",
    )


def header_timeout(limits: WireLimits) -> tuple[int, str, str]:
    return (
        408,
        "header_timeout",
        f"the request headers did not arrive within {limits.header_timeout_s:g} s "
        "(MOORAGE_GATEWAY_HEADER_TIMEOUT_S)",
    )


def body_timeout(limits: WireLimits) -> tuple[int, str, str]:
    return (
        408,
        "body_timeout",
        f"the request body paused for more than {limits.body_timeout_s:g} s "
        "(MOORAGE_GATEWAY_BODY_TIMEOUT_S); send it without long gaps",
    )
