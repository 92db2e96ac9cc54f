"""When a replica found dead after a restart of moorage stopped holding its resources.

The runtime says a replica is gone, not since when. What moorage knows is its own
last sign of life: the controller's heartbeat, written after each pass that saw every
replica the store calls running still running (or recorded it failed). A replica
found gone by the first pass after a restart was therefore alive at the previous
run's last heartbeat and may have died any time after it; billing closes there, so
the time moorage was down is not billed for it (``docs/billing.md``).
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["failed_while_down_at"]


def failed_while_down_at(
    last_heartbeat: datetime | None,
    last_event_at: datetime,
    billed_until: datetime | None,
    now: datetime,
) -> datetime:
    """The moment to record the ``failed`` event of a replica the restarted controller
    found gone.

    - No heartbeat (the first run of a store that has none): ``now``, as when the
      failure is seen while moorage runs.
    - Else the heartbeat (``now`` at the latest: a heartbeat ahead of the clock is a
      clock that stepped back), but never before the replica's own last event, so its
      events stay in order, and never before ``billed_until``, so no second a
      checkpoint already closed is reopened (a checkpoint can run after the last
      heartbeat, before moorage died).
    """
    if last_heartbeat is None:
        return now
    moment = max(min(last_heartbeat, now), last_event_at)
    return moment if billed_until is None else max(moment, billed_until)
