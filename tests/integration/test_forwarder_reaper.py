"""The two small parts the ray runtime puts beside a replica on its node: the forwarder
(the node's address piped, byte for byte, to the replica's own socket) and the reaper
(the replica's process group killed when the actor that started it dies unannounced)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from moorage.runtimes.forwarder import Forwarder

pytestmark = pytest.mark.anyio


async def _echo_server(path: Path) -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data.upper())
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(echo, str(path))


async def test_the_forwarder_pipes_both_ways_to_a_unix_socket(tmp_path: Path) -> None:
    server = await _echo_server(tmp_path / "replica.sock")
    forwarder = Forwarder(f"unix:{tmp_path / 'replica.sock'}")
    port = await forwarder.listen("127.0.0.1")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = b"get / http/1.1\r\n" * 10_000  # larger than one read
        writer.write(payload)
        writer.write_eof()
        received = await asyncio.wait_for(reader.read(), 10)
        assert received == payload.upper()
        writer.close()
    finally:
        await forwarder.close()
        server.close()


async def test_the_forwarder_closes_a_connection_when_the_replica_is_not_there(
    tmp_path: Path,
) -> None:
    forwarder = Forwarder(f"unix:{tmp_path / 'absent.sock'}")
    port = await forwarder.listen("127.0.0.1")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        # Closed at once, or reset: either way nothing answers and nothing hangs.
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    finally:
        await forwarder.close()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# A stand-in for the actor's worker: starts a "replica" (a process group of a shell and
# its child) and a reaper beside it, prints their pids, then waits to be killed.
PARENT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    replica = subprocess.Popen(["sh", "-c", "sleep 300 & wait"], start_new_session=True)
    reaper = subprocess.Popen(
        [sys.executable, "-m", "moorage.runtimes.reaper", str(replica.pid)],
        env={**os.environ, "MOORAGE_REAPER_PARENT": str(os.getpid())},
        start_new_session=True,
    )
    print(replica.pid, reaper.pid, flush=True)
    time.sleep(300)
    """
)


def test_the_reaper_kills_the_replicas_group_when_its_starter_dies() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    replica = reaper = 0
    try:
        assert parent.stdout is not None
        replica, reaper = (int(pid) for pid in parent.stdout.readline().split())
        time.sleep(1.0)  # two of the reaper's looks: it must not act while the parent lives
        assert _alive(replica)
        parent.kill()  # SIGKILL: no clean-up of its own runs
        parent.wait()
        _wait(lambda: not _alive(replica), "the replica's group outlived its starter")
        _wait(lambda: not _alive(reaper), "the reaper lingered after its work")
    finally:
        if parent.stdout is not None:
            parent.stdout.close()
        for pid in (parent.pid, replica):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


def test_the_reaper_leaves_when_the_replica_ends_by_itself() -> None:
    replica = subprocess.Popen(["sleep", "1"], start_new_session=True)
    reaper = subprocess.Popen(
        [sys.executable, "-m", "moorage.runtimes.reaper", str(replica.pid)],
        start_new_session=True,
    )
    try:
        replica.wait(timeout=10)
        assert reaper.wait(timeout=10) == 0
    finally:
        for process in (replica, reaper):
            if process.poll() is None:
                process.kill()
                process.wait()
