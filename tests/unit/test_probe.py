"""The probe scheduler: probes run on their own, each within a total deadline, and the
reconcile pass only reads their latest results. Fake clock, fake probe functions; the
HTTP probe itself against small servers on loopback and on a Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from moorage.clock import FakeClock
from moorage.controller.plan import ProbeRecord, ProbeTarget, probe_verdicts, probes_due
from moorage.controller.probe import HttpProbe, ProbeAnswer, ProbeScheduler
from moorage.models.replicas import ReplicaState
from tests.unit.builders import T0, all_running, at, make_endpoint, make_replica


def target(replica_id: str = "r-1", timeout_s: float = 2.0) -> ProbeTarget:
    return ProbeTarget(replica_id, "127.0.0.1:1", "/ready", timeout_s)


class FakeProbe:
    """Answers what the test sets; ``hang`` makes every call wait forever."""

    def __init__(self, answers: list[bool] | None = None, hang: bool = False) -> None:
        self.answers = answers or []
        self.hang = hang
        self.calls: list[tuple[str, str, float]] = []

    async def __call__(self, address: str, path: str, timeout_s: float) -> ProbeAnswer:
        self.calls.append((address, path, timeout_s))
        if self.hang:
            await asyncio.Event().wait()
        ok = self.answers.pop(0)
        return ProbeAnswer(ok, "answered 200" if ok else "answered 503")


async def settle(scheduler: ProbeScheduler, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while scheduler.in_flight():
            await asyncio.sleep(0.005)


@pytest.mark.anyio
async def test_starting_a_probe_never_waits_for_it() -> None:
    probe = FakeProbe(hang=True)
    scheduler = ProbeScheduler(probe, FakeClock())

    scheduler.start([target("r-1", timeout_s=600)], T0)  # returns at once
    await asyncio.sleep(0)

    assert scheduler.in_flight() == {"r-1"}
    assert scheduler.results() == {}
    await scheduler.close()
    assert scheduler.in_flight() == frozenset()


@pytest.mark.anyio
async def test_a_probe_that_never_answers_fails_at_its_total_deadline() -> None:
    clock = FakeClock()
    scheduler = ProbeScheduler(FakeProbe(hang=True), clock)

    scheduler.start([target(timeout_s=0.05)], clock.now())
    await settle(scheduler)

    record = scheduler.results()["r-1"]
    assert not record.ok
    assert record.failures_in_a_row == 1
    assert record.detail == "GET /ready: no answer within 0.05 s"


@pytest.mark.anyio
async def test_one_probe_at_a_time_per_replica() -> None:
    probe = FakeProbe(hang=True)
    scheduler = ProbeScheduler(probe, FakeClock())

    scheduler.start([target()], at(0))
    scheduler.start([target()], at(5))
    await asyncio.sleep(0)

    assert len(probe.calls) == 1
    assert scheduler.last_started()["r-1"] == at(0)
    await scheduler.close()


@pytest.mark.anyio
async def test_failures_in_a_row_count_up_and_a_pass_resets_them() -> None:
    clock = FakeClock()
    scheduler = ProbeScheduler(FakeProbe([False, False, True, False]), clock)
    seen = []
    for _ in range(4):
        clock.advance(1)
        scheduler.start([target()], clock.now())
        await settle(scheduler)
        record = scheduler.results()["r-1"]
        seen.append((record.ok, record.failures_in_a_row))
        assert record.started_at == record.finished_at == clock.now()

    assert seen == [(False, 1), (False, 2), (True, 0), (False, 1)]


@pytest.mark.anyio
async def test_a_probe_function_that_raises_is_a_failed_probe() -> None:
    async def broken(address: str, path: str, timeout_s: float) -> ProbeAnswer:
        raise RuntimeError("boom")

    scheduler = ProbeScheduler(broken, FakeClock())
    scheduler.start([target()], T0)
    await settle(scheduler)

    record = scheduler.results()["r-1"]
    assert not record.ok
    assert "boom" in record.detail


@pytest.mark.anyio
async def test_retain_forgets_replicas_that_are_gone() -> None:
    scheduler = ProbeScheduler(FakeProbe([True, True]), FakeClock())
    scheduler.start([target("r-1"), target("r-2")], T0)
    await settle(scheduler)

    scheduler.retain(["r-2"])

    assert set(scheduler.results()) == {"r-2"}
    assert set(scheduler.last_started()) == {"r-2"}


# -- the pure decisions -----------------------------------------------------------------


def test_probes_are_due_by_period_and_never_twice_at_once() -> None:
    endpoint = make_endpoint()
    replica = make_replica("r-1")
    observed = all_running([replica])
    endpoints = {endpoint.service_id: endpoint}

    first = probes_due(endpoints, [replica], observed, {}, frozenset(), at(0))
    busy = probes_due(endpoints, [replica], observed, {}, frozenset({"r-1"}), at(0))
    too_soon = probes_due(endpoints, [replica], observed, {"r-1": at(0)}, frozenset(), at(0.5))
    again = probes_due(endpoints, [replica], observed, {"r-1": at(0)}, frozenset(), at(1))

    probe = endpoint.deploy.readiness_probe
    address = observed["r-1"].address
    assert address is not None
    assert first == [ProbeTarget("r-1", address, probe.path, probe.timeout_s)]
    assert busy == []
    assert too_soon == []
    assert again == first


def test_a_replica_the_runtime_does_not_run_is_not_probed() -> None:
    endpoint = make_endpoint()
    replica = make_replica("r-1")

    assert probes_due({endpoint.service_id: endpoint}, [replica], {}, {}, frozenset(), at(0)) == []


def record(ok: bool, started: float, failures: int = 0) -> ProbeRecord:
    return ProbeRecord(ok, "GET /", at(started), at(started), failures)


def test_a_starting_replica_ignores_a_probe_from_its_previous_life() -> None:
    restarted = make_replica("r-1", state=ReplicaState.STARTING, since=at(10))

    stale = probe_verdicts([restarted], {"r-1": record(True, 9)})
    fresh = probe_verdicts([restarted], {"r-1": record(True, 10)})

    assert stale == ({}, {})
    assert fresh == ({"r-1": True}, {"r-1": 0})


def test_a_ready_replica_reads_its_latest_result_and_failures() -> None:
    ready = make_replica("r-1", state=ReplicaState.READY, since=at(10))

    assert probe_verdicts([ready], {"r-1": record(False, 5, failures=2)}) == (
        {"r-1": False},
        {"r-1": 2},
    )


# -- the HTTP probe -----------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, unix: Path | None = None) -> AsyncIterator[str]:
    """A server for one test; yields the address a replica would report. Its handlers
    end with it, their connections closed."""
    handlers: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            handlers.discard(task)

    if unix is not None:
        server = await asyncio.start_unix_server(tracked, path=str(unix))
        address = f"unix:{unix}"
    else:
        server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield address
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


async def answer(status: int, body: bytes = b"ok") -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while await reader.readuntil(b"\r\n\r\n"):
                head = b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (status, len(body))
                writer.write(head + body)
                await writer.drain()
        writer.close()

    return handle


async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        while True:
            await asyncio.sleep(0.05)
            writer.write(b"a")
            await writer.drain()


async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        while True:
            writer.write(b"x" * 65536)
            await writer.drain()


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "ok"), [(200, True), (404, True), (503, False)])
async def test_the_http_probe_passes_below_500(status: int, ok: bool) -> None:
    async with serving(await answer(status)) as address:
        result = await HttpProbe()(address, "/ready", 2.0)
    assert result == ProbeAnswer(ok, f"answered {status}")


@pytest.mark.anyio
async def test_a_dripping_answer_fails_at_the_deadline_not_later() -> None:
    scheduler = ProbeScheduler(HttpProbe(), FakeClock())
    async with serving(drip) as address:
        loop = asyncio.get_running_loop()
        began = loop.time()
        scheduler.start([ProbeTarget("r-1", address, "/", 0.5)], T0)
        await settle(scheduler)
        took = loop.time() - began
    assert not scheduler.results()["r-1"].ok
    assert took < 3.0  # the per-read timeout alone would never end


@pytest.mark.anyio
async def test_a_huge_body_is_not_read() -> None:
    async with serving(huge) as address:
        result = await asyncio.wait_for(HttpProbe()(address, "/", 2.0), 5)
    assert result.ok


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (b"", "closed the connection without answering"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "answered something other than HTTP"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "answered something other than HTTP"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000, "answered a head over 16384 bytes"),
    ],
)
async def test_an_answer_that_is_not_http_fails_and_says_what_came(reply: bytes, said: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
        writer.close()

    async with serving(handle) as address:
        result = await HttpProbe()(address, "/", 2.0)
    assert not result.ok
    assert result.detail.startswith(said)


@pytest.mark.anyio
async def test_nothing_listening_fails_with_the_reason() -> None:
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    result = await HttpProbe()(f"127.0.0.1:{port}", "/", 2.0)
    assert result == ProbeAnswer(False, "cannot connect: Connection refused")


@pytest.mark.anyio
async def test_the_probe_sends_one_get_that_closes_its_connection() -> None:
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        heads.append(await reader.read())  # the probe closes: nothing more comes
        writer.close()

    async with serving(handle) as address:
        assert (await HttpProbe()(address, "/health?x=1", 2.0)).ok
        async with asyncio.timeout(5):
            while len(heads) < 2:
                await asyncio.sleep(0.01)
    request_line, *headers = heads[0].decode().split("\r\n")
    assert request_line == "GET /health?x=1 HTTP/1.1"
    assert "Connection: close" in headers
    assert heads[1] == b""


@pytest.mark.anyio
async def test_unix_socket_addresses_are_probed(tmp_path: Path) -> None:
    socket_path = tmp_path / "replica.sock"
    async with serving(await answer(200), unix=socket_path) as address:
        first = await HttpProbe()(address, "/ready", 2.0)
        second = await HttpProbe()(address, "/ready", 2.0)
    assert first.ok
    assert second.ok
