"""What ``create``, ``update``, ``scale``, ``start`` and ``apply`` show while they wait
for an endpoint: one live line on a terminal, one plain line per change otherwise
(a CI log holds what happened, not a thousand redraws).

The texts are pure functions of the endpoint and the seconds waited, so what a
person sees is checked without a server or a terminal.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.text import Text

from moorage.api.schemas import Endpoint
from moorage.cli.shown import plain, visible
from moorage.models.states import EndpointStatus
from moorage.sdk.waiting import progress


def elapsed_text(seconds: float) -> str:
    """``7s``, ``2m05s``, ``1h02m``: short enough for one line."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def ready_text(endpoint: Endpoint) -> str:
    """``1/2 ready``: replicas of the current revision ready, of those wanted (during a
    rollout the old revision's do not count)."""
    seen = progress(endpoint)
    return f"{seen.ready}/{seen.wanted} ready"


def status_line(endpoint: Endpoint, seconds: float) -> str:
    """``web: initializing, 0/2 ready, pulling image: 45% (12s)``."""
    parts = [endpoint.status, ready_text(endpoint)]
    if endpoint.status_info:
        parts.append(endpoint.status_info)
    return f"{endpoint.name}: {', '.join(parts)} ({elapsed_text(seconds)})"


def live_line(endpoint: Endpoint, seconds: float) -> str:
    """``web 12s: initializing, 0/2 ready: the app listens on 18123, not on $PORT``:
    the time first, so that a line longer than the screen loses none of it."""
    parts = f"{endpoint.status}, {ready_text(endpoint)}"
    if endpoint.status_info:
        parts += f": {endpoint.status_info}"
    return f"{endpoint.name} {elapsed_text(seconds)}: {parts}"


# A duration in parentheses, ``(12 s)`` or ``(1m05s)``, and a percentage: what changes
# as time passes, not what is happening.
_TICKING = re.compile(r"\(\s*(?:\d+(?:\.\d+)?\s*(?:h|min|ms|m|s)\s*)+\)|\d+(?:\.\d+)?\s*%")


def steady(info: str | None) -> str:
    """``status_info`` without its elapsed times and percentages: a change of what is
    left is worth a line (``the app listens on 18123, not on $PORT``); a clock
    ticking in it is not."""
    return _TICKING.sub("", info or "")


def phase(endpoint: Endpoint) -> tuple[str, int, int, str]:
    """What a change of is worth a line when no one watches a live one: the status,
    the replicas ready of those wanted, and what the server says (less its clock)."""
    seen = progress(endpoint)
    return (seen.status, seen.ready, seen.wanted, steady(seen.info))


def failure_text(endpoint: Endpoint, message: str) -> str:
    """Why waiting failed (``message``, the server's ``status_info`` in it), with the
    last failure of a replica when that says more."""
    for replica in endpoint.endpoint_metadata.replicas:
        failure = replica.last_failure
        if failure and failure not in message:
            return f"{message}; replica {replica.replica_id[:8]}: {failure}"
    return message


def still_retrying(endpoint: Endpoint) -> bool:
    """Whether a failed endpoint is still there and wants replicas: the server goes on
    retrying it with backoff (and billing it) until it is fixed or removed."""
    return not endpoint.is_deleted and endpoint.status is not EndpointStatus.STOPPED


def left_behind_text(endpoint: Endpoint) -> str:
    """What a failed create or update leaves, and the two ways out of it."""
    name = endpoint.name
    return (
        f"{name} is still there, retrying with backoff: fix it with "
        f"moorage endpoints update {name} ..., or remove it with "
        f"moorage endpoints delete {name}"
    )


class Reporter:
    """Receives each endpoint seen while waiting (``on_progress``) and shows it: a live
    line on a terminal, else a line per change of phase."""

    def __init__(
        self,
        live: bool,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.live = live
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.started = clock()
        self.last_phase: tuple[str, int, int, str] | None = None
        self.text = ""
        self._update: Callable[[Text], None] | None = None

    def __call__(self, endpoint: Endpoint) -> None:
        seconds = self.clock() - self.started
        self.text = status_line(endpoint, seconds)
        if self.live:
            self.text = live_line(endpoint, seconds)
            if self._update is not None:
                self._update(plain(self.text))  # the server's words are never markup
        elif phase(endpoint) != self.last_phase:
            print(visible(self.text), file=self.stream, flush=True)
        self.last_phase = phase(endpoint)

    @contextmanager
    def showing(self, console: Console) -> Iterator[None]:
        """While inside, a live status line (only on a terminal). It wraps at the
        screen's edge (``console`` may be one that never wraps a message): what the
        server advises is read in full."""
        if not self.live:
            yield
            return
        screen = Console(
            file=console.file,
            force_terminal=console.is_terminal,
            width=console.width,
            highlight=False,
            emoji=False,
        )
        with screen.status(plain(self.text or "waiting for the endpoint")) as status:
            self._update = status.update
            try:
                yield
            finally:
                self._update = None
