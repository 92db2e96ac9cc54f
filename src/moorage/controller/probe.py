"""Readiness probes, each on its own task, so no app can hold up the control loop.

A replica is ready while its app answers ``GET <readiness_probe.path>`` with a
status below 500 within ``timeout_s`` (a Flask app without that route answers
404, and is up; 5xx is what model servers send while weights still load).

The reconcile pass never awaits a probe: it reads the latest results from the
``ProbeScheduler``'s table and starts the probes that are due, each as a task
with a **total** deadline (connect, head and body together). An app that
answers one byte a second, or never, costs one task per replica until its
deadline, and nothing else waits for it. ``HttpProbe`` reads at most a few KiB
of the body: the status is in the head, and a small body read to its end lets
the connection be reused for the next probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import httpx

from moorage.clock import Clock
from moorage.controller.plan import ProbeRecord, ProbeTarget

# The head says everything; the body is read only so that the connection can be reused.
MAX_BODY_BYTES = 4096
# How long the body of an answer that passed may take before the connection is dropped.
BODY_GRACE_S = 0.5
UNIX_PREFIX = "unix:"


@dataclass(frozen=True)
class ProbeAnswer:
    """What one probe found: passed or not, and a few words saying why."""

    ok: bool
    detail: str


ProbeFunction = Callable[[str, str, float], Awaitable[ProbeAnswer]]


class HttpProbe:
    """``GET path`` on a replica at ``host:port``, ``[v6]:port`` or ``unix:/abs/path``.

    TCP replicas share one client; each Unix socket gets a client of its own (an
    httpx transport serves one socket), closed by ``retain`` once its replica goes.
    """

    def __init__(self, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.max_body_bytes = max_body_bytes
        # httpx logs every request at INFO: one line per replica per second. Readiness
        # changes are logged by the controller, once each.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        self._tcp = httpx.AsyncClient(trust_env=False, limits=limits)
        self._unix: dict[str, httpx.AsyncClient] = {}

    def _client(self, address: str) -> tuple[httpx.AsyncClient, str]:
        if not address.startswith(UNIX_PREFIX):
            return self._tcp, f"http://{address}"
        client = self._unix.get(address)
        if client is None:
            transport = httpx.AsyncHTTPTransport(uds=address[len(UNIX_PREFIX) :])
            client = self._unix[address] = httpx.AsyncClient(transport=transport, trust_env=False)
        return client, "http://localhost"

    async def __call__(self, address: str, path: str, timeout_s: float) -> ProbeAnswer:
        client, base = self._client(address)
        try:
            async with client.stream("GET", base + path, timeout=timeout_s) as response:
                status = response.status_code
                await self._drain(response)
        except httpx.TimeoutException:
            return ProbeAnswer(False, f"no answer within {timeout_s:g} s")
        except httpx.HTTPError as exc:
            return ProbeAnswer(False, _describe(exc))
        return ProbeAnswer(status < 500, f"answered {status}")

    async def _drain(self, response: httpx.Response) -> None:
        """Reads a small body to its end (the connection can then serve the next probe);
        stops at the cap or after a short grace, which closes the connection instead."""
        read = 0
        with contextlib.suppress(TimeoutError, httpx.HTTPError):
            async with asyncio.timeout(BODY_GRACE_S):
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read > self.max_body_bytes:
                        return

    async def retain(self, addresses: Iterable[str]) -> None:
        """Closes the clients of Unix sockets no replica listens on any more."""
        keep = set(addresses)
        for address in [a for a in self._unix if a not in keep]:
            await self._unix.pop(address).aclose()

    async def close(self) -> None:
        await self._tcp.aclose()
        await self.retain(())


def _describe(exc: httpx.HTTPError) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or (str(cause) if cause else "") or type(exc).__name__
    return text.splitlines()[0][:200]


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
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
