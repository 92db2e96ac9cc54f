"""Readiness probes, each on its own task, so no app can hold up the control loop.

A replica is ready while its app answers ``GET <readiness_probe.path>`` with a
status below 500 within ``timeout_s`` (a Flask app without that route answers
404, and is up; 5xx is what model servers send while weights still load).

The reconcile pass never awaits a probe: it reads the latest results from the
``ProbeScheduler``'s table and starts the probes that are due, each as a task
with a **total** deadline (connect and head together). An app that
answers one byte a second, or never, costs one task per replica until its
deadline, and nothing else waits for it.

``HttpProbe`` speaks just enough HTTP/1.1 for this: a fresh connection per probe
(``Connection: close``), the request written in one piece, the head read whole
(at most ``MAX_HEAD_BYTES``; a replica that drips it fails at the deadline), the
connection closed without reading the body. An HTTP client library does much more
than that: with 100 replicas probed each second, httpx took a quarter of the
server's CPU.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from moorage.clock import Clock
from moorage.controller.plan import ProbeRecord, ProbeTarget
from moorage.controller.tasks import cancel_all

# The status and headers of a readiness answer; a longer head is refused, not read on.
MAX_HEAD_BYTES = 16384
UNIX_PREFIX = "unix:"


@dataclass(frozen=True)
class ProbeAnswer:
    """What one probe found: passed or not, and a few words saying why."""

    ok: bool
    detail: str


ProbeFunction = Callable[[str, str, float], Awaitable[ProbeAnswer]]


class HttpProbe:
    """``GET path`` on a replica at ``host:port``, ``[v6]:port`` or ``unix:/abs/path``;
    the caller bounds the whole call with its deadline."""

    async def __call__(self, address: str, path: str, timeout_s: float) -> ProbeAnswer:
        try:
            reader, writer = await _connect(address)
        except OSError as exc:
            return ProbeAnswer(False, f"cannot connect: {_reason(exc)}")
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: replica\r\nUser-Agent: moorage-probe\r\n"
                "Connection: close\r\n\r\n".encode("ascii")
            )
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return ProbeAnswer(False, "closed the connection without answering")
            return ProbeAnswer(False, f"answered something other than HTTP: {exc.partial[:40]!r}")
        except asyncio.LimitOverrunError:
            return ProbeAnswer(False, f"answered a head over {MAX_HEAD_BYTES} bytes")
        except OSError as exc:
            return ProbeAnswer(False, f"connection failed: {_reason(exc)}")
        finally:
            writer.close()
        status = _status(head.split(b"\n", 1)[0])
        if status is None:
            return ProbeAnswer(False, f"answered something other than HTTP: {head[:40]!r}")
        return ProbeAnswer(status < 500, f"answered {status}")


async def _connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith(UNIX_PREFIX):
        return await asyncio.open_unix_connection(address[len(UNIX_PREFIX) :], limit=MAX_HEAD_BYTES)
    host, _, port = address.rpartition(":")
    return await asyncio.open_connection(host.strip("[]"), int(port), limit=MAX_HEAD_BYTES)


def _reason(exc: OSError) -> str:
    # asyncio words a refused connection "Connect call failed (host, port)".
    return os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__


def _status(line: bytes) -> int | None:
    """The status code of an HTTP/1.x status line, or None."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        return None
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        return None
    return int(code)


class ProbeScheduler:
    """Runs probes as tasks and keeps each replica's latest result.

    ``start`` never waits; ``results`` is what the reconcile pass reads. Each
    probe gets ``timeout_s`` in all, whatever the probe function does.
    """

    def __init__(self, probe: ProbeFunction, clock: Clock) -> None:
        self._probe = probe
        self._clock = clock
        self._results: dict[str, ProbeRecord] = {}
        self._last_started: dict[str, datetime] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def results(self) -> Mapping[str, ProbeRecord]:
        return dict(self._results)

    def last_started(self) -> Mapping[str, datetime]:
        return dict(self._last_started)

    def in_flight(self) -> frozenset[str]:
        return frozenset(self._tasks)

    def start(self, targets: Iterable[ProbeTarget], now: datetime) -> None:
        """Starts a probe for each target that has none running."""
        for target in targets:
            if target.replica_id in self._tasks:
                continue
            self._last_started[target.replica_id] = now
            self._tasks[target.replica_id] = asyncio.create_task(
                self._run(target, now), name=f"moorage-probe-{target.replica_id}"
            )

    async def _run(self, target: ProbeTarget, started_at: datetime) -> None:
        try:
            async with asyncio.timeout(target.timeout_s):
                answer = await self._probe(target.address, target.path, target.timeout_s)
        except TimeoutError:
            answer = ProbeAnswer(False, f"no answer within {target.timeout_s:g} s")
        except Exception as exc:  # a probe's failure is the replica's, never the loop's
            answer = ProbeAnswer(False, f"probe failed: {exc!r}"[:200])
        finally:
            self._tasks.pop(target.replica_id, None)
        previous = self._results.get(target.replica_id)
        failures = 0 if answer.ok else (previous.failures_in_a_row if previous else 0) + 1
        self._results[target.replica_id] = ProbeRecord(
            ok=answer.ok,
            detail=f"GET {target.path}: {answer.detail}",
            started_at=started_at,
            finished_at=self._clock.now(),
            failures_in_a_row=failures,
        )

    def retain(self, replica_ids: Iterable[str]) -> None:
        """Forgets replicas not in ``replica_ids`` (gone, or waiting to restart): a
        replica's next life starts with a clean count. Running probes finish on their
        own within their deadline."""
        keep = set(replica_ids)
        for table in (self._results, self._last_started):
            for gone in [k for k in table if k not in keep]:
                del table[gone]

    async def close(self) -> None:
        await cancel_all(self._tasks.values())
