"""Runs what ``composition`` built: the API on its private socket, the event loop, signals.

Every request arrives at the raw-protocol gateway (``gateway.http1``), which
serves ``/inference-api/`` itself and forwards the rest to the API's ASGI app,
run by uvicorn on a private socket. Inference traffic thus never pays for ASGI,
while API calls pay one local hop. The front door opens and closes with the
API's lifespan (``MoorageServer.lifespan``), inside uvicorn's run, so uvicorn's
own signal handling covers the whole of moorage.

The private socket is a Unix socket in a 0700 directory of ``MOORAGE_HOME``
(``run/api.sock``), not a loopback port: anything on the host could connect to a
port, and so reach the API without passing the gateway's framing and limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

import uvicorn
import uvloop

from moorage.composition import MoorageServer
from moorage.errors import MoorageError
from moorage.gateway.http1.server import raise_open_file_limit

# sun_path holds 108 bytes, the last a NUL.
_UNIX_PATH_MAX = 107


def private_socket(path: Path) -> socket.socket:
    """The API's listening Unix socket at ``path``, its directory made 0700 (only
    moorage's user may even look up the socket)."""
    path = path.resolve()
    if len(os.fsencode(path)) > _UNIX_PATH_MAX:
        raise MoorageError(
            f"the API's socket path {path} is longer than {_UNIX_PATH_MAX} bytes, the limit "
            "of a Unix socket; use a shorter MOORAGE_HOME"
        )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a moorage that did not stop cleanly
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(server: MoorageServer) -> None:
    api_socket = private_socket(server.api_socket)
    api = uvicorn.Server(
        uvicorn.Config(
            server.api,
            lifespan="on",
            timeout_graceful_shutdown=5,
            log_level="warning",
            # uvicorn's own lines go to moorage's handler, in the chosen format.
            log_config=None,
            access_log=False,
            # Only the gateway connects, and moorage never reads a client's address
            # from headers a client chose.
            proxy_headers=False,
        )
    )
    failed = MoorageError("moorage failed to start; the log above says why")
    try:
        await api.serve(sockets=[api_socket])
    except SystemExit as exc:  # how uvicorn ends a lifespan that failed to start
        raise failed from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(api_socket.getsockname())
        api_socket.close()  # uvicorn leaves it open when the lifespan fails
    if not api.started:  # older uvicorn returns instead (a signal was raised again above)
        raise failed


def run(server: MoorageServer) -> None:
    raise_open_file_limit()
    # Ctrl-C is raised again once everything stopped; by then it is an ordinary exit.
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        runner.run(serve(server))
