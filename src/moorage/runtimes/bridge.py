"""Inside a replica's sandbox: the way in from the gateway to the app.

A sandboxed replica has a network namespace of its own, so nothing outside can
reach its ``127.0.0.1:$PORT``. moorage binds a Unix socket in a directory the
replica cannot see or write and hands the *listening* socket to the sandbox as
standard input; this bridge accepts on it and pipes each connection to the app
on ``127.0.0.1:$PORT`` (or ``[::1]:$PORT``) inside the namespace.

It is run as ``python -I -c <this file's source>``, so it needs only the
interpreter to be visible in the sandbox, not moorage's package: keep it to the
standard library (uvloop is used when the interpreter has it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys

LISTEN_FD = 0
PR_SET_PDEATHSIG = 1
CHUNK_BYTES = 256 * 1024
BACKLOG = 1024


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
) -> None:
    """Copies one direction until EOF (then half-closes, as TCP does) or an error (then
    closes both sides, so the other direction ends too)."""
    try:
        while data := await reader.read(CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.close()
        other.close()


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    error: OSError = ConnectionRefusedError(f"nothing listens on port {port}")
    for host in ("127.0.0.1", "::1"):
        try:
            return await asyncio.open_connection(host, port, limit=CHUNK_BYTES)
        except OSError as exc:
            error = exc
    raise error


async def _handle(
    client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, port: int
) -> None:
    try:
        app_reader, app_writer = await _connect(port)
    except OSError:
        client_writer.close()  # the gateway sees a closed connection: not ready yet
        return
    try:
        await asyncio.gather(
            _pump(client_reader, app_writer, client_writer),
            _pump(app_reader, client_writer, app_writer),
        )
    finally:
        app_writer.close()
        client_writer.close()


async def serve(listener: socket.socket, port: int) -> None:
    """Accepts on ``listener`` (already bound and listening) until cancelled."""
    listener.setblocking(False)
    server = await asyncio.start_unix_server(
        lambda r, w: _handle(r, w, port), sock=listener, limit=CHUNK_BYTES, backlog=BACKLOG
    )
    async with server:
        await server.serve_forever()


def end_with_parent() -> None:
    """The bridge's parent is the app: the shell that started the bridge then replaced
    itself with the user's command. The bridge ends when the app does, so the sandbox
    (whose init waits for every process in it) ends too and nothing lingers."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the app was already gone
        os._exit(0)


def main() -> None:
    end_with_parent()
    port = int(os.environ["PORT"])
    # Standard input is the listener; nothing else should read it.
    null = os.open(os.devnull, os.O_RDONLY)
    fd = os.dup(LISTEN_FD)
    os.dup2(null, LISTEN_FD)
    os.close(null)
    listener = socket.socket(fileno=fd)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            asyncio.run(serve(listener, port))
        else:
            uvloop.run(serve(listener, port))


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # one line in the replica's log, not a traceback
        print(f"moorage bridge: {exc!r}", file=sys.stderr, flush=True)
        sys.exit(1)
