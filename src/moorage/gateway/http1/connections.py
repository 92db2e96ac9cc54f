"""How many client connections the gateway holds open, in total and per client address.

Every open connection costs open files: on the API path three (the client's socket,
the gateway's to the API, the API's own end), on the inference path two. Without a
cap, one address opening thousands of slow connections ran ``moorage serve`` out of
open files, and the controller, the API and the replicas with it (EMFILE). Like
HAProxy's ``maxconn`` and nginx's ``limit_conn``, a connection past either cap is
refused as it is accepted: a short 503 with ``Connection: close``, and the socket
closed at once.

By default the total is derived from the open-file limit, leaving a share of it
for the controller, the replicas' pipes and logs, and the API; one address may
take a quarter of the total.
"""

from __future__ import annotations

import logging
import resource
from collections import Counter
from dataclasses import dataclass

from moorage import refusals
from moorage.errors import MoorageError

log = logging.getLogger(__name__)

# Open files each held connection may cost (client, gateway to API, API side).
FILES_PER_CONNECTION = 3
# A refusal is logged once per address (and once for the total cap) per this many s.
LOG_INTERVAL_S = 60.0
_MAX_LOGGED_ADDRESSES = 10_000


def open_file_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def derived_total(open_files: int) -> int:
    """The default cap for ``open_files``: what is left after a reserve (a quarter of
    the limit, at least 1,024 but never more than half), three files per connection."""
    reserve = min(open_files // 2, max(1024, open_files // 4))
    return max(1, (open_files - reserve) // FILES_PER_CONNECTION)


@dataclass(frozen=True)
class ConnectionCaps:
    total: int
    per_client: int

    @classmethod
    def resolve(cls, total: int, per_client: int, open_files: int) -> ConnectionCaps:
        """The caps in force: ``0`` for either means derived (the total from
        ``open_files``, per client a quarter of the total)."""
        resolved = total or derived_total(open_files)
        return cls(resolved, min(per_client or max(1, resolved // 4), resolved))


class ConnectionCounter:
    """Counts open client connections by address; admits a new one only under both
    caps. ``admit`` and ``release`` are called once each per admitted connection."""

    def __init__(self, caps: ConnectionCaps) -> None:
        self.caps = caps
        self.total = 0
        self.by_client: Counter[bytes] = Counter()
        self._logged: dict[bytes, float] = {}

    def admit(self, peer: bytes, now: float) -> MoorageError | None:
        """None if the connection may stay (it is counted), else the refusal to send."""
        caps = self.caps
        if self.total >= caps.total:
            self._log(b"", now, "%d client connections are open, the most allowed", caps.total)
            return refusals.too_many_connections(caps.total)
        if self.by_client[peer] >= caps.per_client:
            self._log(
                peer,
                now,
                "%d connections from %s are open, the most one address may hold",
                caps.per_client,
                peer.decode("latin-1"),
            )
            return refusals.too_many_connections_from(caps.per_client)
        self.total += 1
        self.by_client[peer] += 1
        return None

    def release(self, peer: bytes) -> None:
        self.total -= 1
        left = self.by_client[peer] - 1
        if left > 0:
            self.by_client[peer] = left
        else:
            del self.by_client[peer]

    def _log(self, key: bytes, now: float, message: str, *args: object) -> None:
        last = self._logged.get(key)
        if last is not None and now - last < LOG_INTERVAL_S:
            return
        if len(self._logged) >= _MAX_LOGGED_ADDRESSES:  # many addresses: forget the old
            self._logged = {k: t for k, t in self._logged.items() if now - t < LOG_INTERVAL_S}
            if len(self._logged) >= _MAX_LOGGED_ADDRESSES:
                return  # the log would grow with the attack
        self._logged[key] = now
        setting = "MOORAGE_GATEWAY_MAX_CONNECTIONS" + ("_PER_CLIENT" if key else "")
        log.warning(
            message + "; refusing more (%s); the next refusals are logged after %g s",
            *args,
            setting,
            LOG_INTERVAL_S,
        )
