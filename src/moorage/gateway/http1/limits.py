"""The gateway's limits on what a client may send (``moorage.refusals`` words the
refusals that name them).

Each limit has a default and a setting (``MOORAGE_*`` for ``moorage serve``, the same
name as an environment variable or option for ``moorage gateway``), so an operator
can change it. Limits are checked where bytes arrive, as counts: a big input is
refused once it passes its limit, before it costs memory or time.
"""

from __future__ import annotations

from dataclasses import dataclass

from moorage.errors import MoorageError

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
    body_timeout_s: float = 30.0  # the longest pause inside a body
    api_body_timeout_s: float = 10.0  # a whole API body (moorage serve)
    # Open client connections; 0: derived from the open-file limit (``connections.py``).
    max_connections: int = 0
    max_connections_per_client: int = 0  # 0: a quarter of ``max_connections``


class Refused(Exception):
    """Raised from a parser callback: the request breaks a limit or a framing rule.
    ``error`` is what the client is answered (see ``moorage.refusals``)."""

    def __init__(self, error: MoorageError) -> None:
        super().__init__(error.message)
        self.error = error
