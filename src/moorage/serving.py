"""Running ``moorage serve``: the gateway's front door on the public port, the API behind it.

Every request arrives at the raw-protocol gateway (``gateway.http1``), which
serves ``/inference-api/`` itself and forwards the rest to the API's ASGI app,
run by uvicorn on a private loopback socket. Inference traffic thus never pays
for ASGI, while API calls pay one loopback hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
import uvloop

from moorage.gateway.http1.server import (
    ProxyServer,
    freeze_startup_heap,
    raise_open_file_limit,
)
from moorage.gateway.router import GatewayRouter
from moorage.server import MoorageServer

log = logging.getLogger(__name__)


def _private_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
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
    api_socket = _private_socket()
    api_address = f"127.0.0.1:{api_socket.getsockname()[1]}"
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
        GatewayRouter(server.routes, server.dispatcher, server.metrics, api_address=api_address)
    )
    with api.capture_signals_for_whole_run():
        await proxy.listen(host, port)
        freeze_startup_heap()
        try:
            await api.serve(sockets=[api_socket])
        finally:
            await proxy.close()
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
