"""A byte pipe from a TCP port on the node's address to a replica's own address.

A replica on the process runtime listens where only its node reaches it:
``127.0.0.1:PORT`` (the admin's) or a Unix socket (a sandboxed one, which has no
network). On a Ray cluster the gateway runs elsewhere, so the replica's actor
listens on the node's cluster address and pipes each connection, both ways and
unchanged, to the replica. HTTP framing stays the gateway's and the replica's: this
layer neither reads nor writes a byte of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

CHUNK_BYTES = 64 * 1024
# Connections a replica's forwarder keeps at once: the gateway's limits are far lower.
MAX_CONNECTIONS = 4096


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _open(target: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if target.startswith("unix:"):
        return await asyncio.open_unix_connection(target.removeprefix("unix:"))
    host, _, port = target.rpartition(":")
    return await asyncio.open_connection(host, int(port))


class Forwarder:
    """Listens on ``host`` (an ephemeral port) and pipes every connection to ``target``
    (``host:port`` or ``unix:/path``)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._server: asyncio.Server | None = None
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self, host: str) -> int:
        self._server = await asyncio.start_server(self._serve, host, 0, reuse_address=True)
        sock: socket.socket = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if self._slots.locked():
                return
            async with self._slots:
                try:
                    upstream_reader, upstream_writer = await _open(self.target)
                except OSError:
                    return  # the gateway sees a closed connection: the replica is not there
                try:
                    await asyncio.gather(
                        _pipe(reader, upstream_writer), _pipe(upstream_reader, writer)
                    )
                finally:
                    upstream_writer.close()
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
