"""Replicas for the gateway's HTTP tests: one aiohttp.web app, served from a thread.

``Replica`` answers a handful of paths that each show one side of HTTP/1.1:

- ``/hello``: a fixed body with a Content-Length (``GET``/``HEAD``);
- ``/inspect``: the request as the replica received it, as JSON (headers in
  order, body length and sha256, read as a stream);
- ``/path/...?delay=S``: its own path and query as the body, after S seconds;
- ``/hop``: a response carrying hop-by-hop headers (``Connection: X-Foo``);
- ``/sse?count=N&interval=S``: N server-sent events S seconds apart, each with
  the monotonic time it was sent;
- ``/drip?interval=S``: a line every S seconds until the client goes away;
- ``/unsized``: a body with no Content-Length (chunked on the wire);
- ``/big?size=N&seed=K``: ``pattern(N, K)`` with a Content-Length, counting what it
  wrote by seed;
- ``/ws``: a WebSocket echo.

What the replica saw (paths asked for, streams ended, bytes of ``/big`` written,
WebSocket close codes) is recorded on the ``Replica`` for the test to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web
from multidict import CIMultiDict

HELLO = b"hello from the replica"
BLOCK = 1 << 18


def pattern(size: int, seed: int) -> Iterator[bytes]:
    """``size`` pseudo-random bytes in blocks, the same for the same seed."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        block = rng.randbytes(min(BLOCK, left))
        left -= len(block)
        yield block


def pattern_sha256(size: int, seed: int) -> str:
    digest = hashlib.sha256()
    for block in pattern(size, seed):
        digest.update(block)
    return digest.hexdigest()


@dataclass
class Replica:
    """The app on 127.0.0.1, on a port of its own; ``address`` is ``host:port``."""

    paths: list[str] = field(default_factory=list)  # every /path/... asked for, in order
    drips: list[str] = field(default_factory=list)  # "started", then how it "ended: ..."
    big_written: dict[int, int] = field(default_factory=dict)  # by seed
    websocket_closes: list[int | None] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _failure: BaseException | None = None

    @property
    def address(self) -> str:
        assert self._sock is not None
        host, port = self._sock.getsockname()[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Replica:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._run, name="replica", daemon=True)
        self._thread.start()
        problem = None
        if not self._ready.wait(60):  # generous: a loaded machine is slow, not broken
            problem = "the replica did not start within 60 s"
        elif self._failure is not None:
            problem = f"the replica did not start: {self._failure!r}"
        if problem is not None:
            with contextlib.suppress(AssertionError):  # what is left of it goes first
                self.stop()
            raise AssertionError(problem)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(20)
            assert not self._thread.is_alive(), "the replica did not stop within 20 s"
        if self._sock is not None:
            self._sock.close()
        if self._failure is not None:
            raise AssertionError(f"the replica failed: {self._failure!r}") from self._failure

    def __enter__(self) -> Replica:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start() or stop()
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            assert self._sock is not None
            await web.SockSite(runner, self._sock).start()
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/hello", self._hello)
        app.router.add_route("*", "/inspect", self._inspect)
        app.router.add_get("/path/{rest:.*}", self._path)
        app.router.add_get("/hop", self._hop)
        app.router.add_get("/sse", self._sse)
        app.router.add_get("/drip", self._drip)
        app.router.add_get("/unsized", self._unsized)
        app.router.add_get("/big", self._big)
        app.router.add_get("/ws", self._websocket)
        return app

    # -- handlers --------------------------------------------------------------------

    async def _hello(self, request: web.Request) -> web.Response:
        return web.Response(body=HELLO, content_type="text/plain", headers={"X-Replica": "yes"})

    async def _inspect(self, request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        length = 0
        async for piece in request.content.iter_any():
            digest.update(piece)
            length += len(piece)
        seen = {
            "method": request.method,
            "path": request.path_qs,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
            "body_length": length,
            "body_sha256": digest.hexdigest(),
        }
        return web.json_response(seen)

    async def _path(self, request: web.Request) -> web.Response:
        self.paths.append(request.path_qs)
        await asyncio.sleep(float(request.query.get("delay", "0")))
        return web.Response(body=request.path_qs.encode(), content_type="text/plain")

    async def _hop(self, request: web.Request) -> web.Response:
        headers = CIMultiDict(
            [
                ("Connection", "X-Foo"),
                ("X-Foo", "for the gateway only"),
                ("Connection", "X-Bar"),  # a second Connection line counts as much
                ("X-Bar", "for the gateway too"),
                ("Keep-Alive", "timeout=5"),
                ("X-Visible", "for the client"),
            ]
        )
        return web.Response(body=b"hop", headers=headers)

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        count = int(request.query.get("count", "5"))
        interval = float(request.query.get("interval", "0.3"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(count):
            if i:
                await asyncio.sleep(interval)
            sent = time.monotonic()
            await response.write(
                f"id: {i}\ndata: {json.dumps({'i': i, 'sent': sent})}\n\n".encode()
            )
        await response.write_eof()
        return response

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        interval = float(request.query.get("interval", "0.1"))
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        self.drips.append("started")
        try:
            for i in range(int(60 / interval)):
                await response.write(b"drip %d\n" % i)
                await asyncio.sleep(interval)
        except (ConnectionError, asyncio.CancelledError) as exc:
            self.drips.append(f"ended: {type(exc).__name__}")
            raise
        self.drips.append("ended: ran out")
        await response.write_eof()
        return response

    async def _unsized(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)  # no Content-Length: chunked on the wire
        with contextlib.suppress(ConnectionError):  # a HEAD's connection is not reused
            for piece in (b"first,", b"second,", b"third"):
                await response.write(piece)
                await asyncio.sleep(0.05)
            await response.write_eof()
        return response

    async def _big(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        seed = int(request.query.get("seed", "0"))
        response = web.StreamResponse(
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        )
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:  # a small, fixed buffer: what it wrote is what left it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 18)
        await response.prepare(request)
        self.big_written[seed] = 0
        with contextlib.suppress(ConnectionError):  # the client went away
            for block in pattern(size, seed):
                await response.write(block)  # waits while the socket's buffer is full
                self.big_written[seed] += len(block)
            await response.write_eof()
        return response

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        with contextlib.suppress(Exception):
            await ws.close()
        self.websocket_closes.append(ws.close_code)
        return ws
