"""Running ``moorage serve``: the gateway's front door on the public port, the API behind it.

Every request arrives at the raw-protocol gateway (``gateway.http1``), which
serves ``/inference-api/`` itself and forwards the rest to the API's ASGI app,
run by uvicorn on a private socket. Inference traffic thus never pays for ASGI,
while API calls pay one local hop.

The private socket is a Unix socket in a 0700 directory of ``MOORAGE_HOME``
(``run/api.sock``), not a loopback port: anything on the host could connect to a
port, and so reach the API without passing the gateway's framing and limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
import uvloop

from moorage.errors import MoorageError
from moorage.gateway.http1.limits import WireLimits
from moorage.gateway.http1.server import (
    ProxyServer,
    freeze_startup_heap,
    raise_open_file_limit,
)
from moorage.gateway.router import GatewayRouter
from moorage.server import MoorageServer
from moorage.settings import Settings

log = logging.getLogger(__name__)


# sun_path holds 108 bytes, the last a NUL.
_UNIX_PATH_MAX = 107


def wire_limits(settings: Settings) -> WireLimits:
    return WireLimits(
        max_url_bytes=settings.gateway_max_url_bytes,
        max_header_bytes=settings.gateway_max_header_bytes,
        max_head_bytes=settings.gateway_max_head_bytes,
        max_body_bytes=settings.gateway_max_body_bytes,
        api_max_body_bytes=settings.api_max_body_bytes,
        retry_buffer_bytes=settings.gateway_retry_buffer_bytes,
        header_timeout_s=settings.gateway_header_timeout_s,
        body_timeout_s=settings.gateway_body_timeout_s,
    )


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


class _ApiServer(uvicorn.Server):
    """uvicorn, with signals caught around the whole run (gateway included) instead of
    around the API alone, so the gateway closes and the last log line is written before
    the signal is raised again."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def capture_signals_for_whole_run(self) -> contextlib.AbstractContextManager[None]:
        return uvicorn.Server.capture_signals(self)


async def serve(server: MoorageServer, host: str, port: int) -> None:
    api_socket = private_socket(server.settings.api_socket)
    api_address = f"unix:{api_socket.getsockname()}"
    api = _ApiServer(
        uvicorn.Config(
            server,
            lifespan="on",
            timeout_graceful_shutdown=5,
            log_level="warning",
            access_log=False,
        )
    )
    proxy = ProxyServer(
        GatewayRouter(server.routes, server.dispatcher, server.metrics, api_address=api_address),
        limits=wire_limits(server.settings),
    )
    with api.capture_signals_for_whole_run():
        await proxy.listen(host, port)
        freeze_startup_heap()
        try:
            await api.serve(sockets=[api_socket])
        finally:
            await proxy.close()
            with contextlib.suppress(OSError):
                os.unlink(api_socket.getsockname())
        if api.started:
            log.info("moorage stopped; its replicas are stopped too")


def run(server: MoorageServer, host: str, port: int) -> None:
    raise_open_file_limit()
    # Ctrl-C is raised again once everything stopped; by then it is an ordinary exit.
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        runner.run(serve(server, host, port))
