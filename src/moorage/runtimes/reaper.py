"""Stops a replica's processes when the process that started them dies.

On the ``ray`` runtime a replica's processes belong to a Ray actor's worker. When
that worker dies without a word (its node's raylet was killed, the OOM killer took
it), nothing would stop the replica's own process group, which would keep its
port, GPUs and memory on a node Ray now thinks is free. The actor starts this
small process beside the replica: it polls its parent, and once the parent is gone
it kills the replica's whole process group; once the group is gone by itself it
exits. Polling (twice a second) rather than ``PR_SET_PDEATHSIG``, which fires when
the forking *thread* ends, and the actor's threads come and go.

Run as ``python -m moorage.runtimes.reaper PGID``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

POLL_S = 0.5


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch(pgid: int, parent: int, poll_s: float = POLL_S) -> str:
    """Waits until ``parent`` or the group ends; kills the group in the first case.
    Answers which happened, for the caller's exit status."""
    while _group_alive(pgid):
        if os.getppid() != parent:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            return "parent gone"
        time.sleep(poll_s)
    return "group gone"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m moorage.runtimes.reaper PGID", file=sys.stderr)
        return 2
    # The parent is whoever started us; a SIGTERM (the actor stopping the replica
    # itself) ends the watch without touching the group.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    watch(int(argv[1]), parent=int(os.environ.get("MOORAGE_REAPER_PARENT", os.getppid())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
