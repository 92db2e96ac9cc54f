"""Replica stand-ins for the gateway's resilience tests: real HTTP/1.1 servers in threads.

A ``Backend`` answers every path with what it received (``/sleep?seconds=S``
first sleeps; ``/stream?count=N&gap=G`` sends N chunks G seconds apart), or,
made with ``hang_up=True``, reads each request and closes the connection without
a word. Either way it records every request it read, so a test can tell how many
times one was delivered. Like most servers, it closes a connection idle for
``keep_alive_s``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # joined by server_close: nothing outlives the test
    backend: Backend


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.backend.keep_alive_s)  # then idle: closed
        self.server.backend._opened(self.connection)

    def finish(self) -> None:
        self.server.backend._closed(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("Request timed out"):  # idle past keep_alive_s: closed here
            self.server.backend._timed_out()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _handle(self) -> None:
        backend = self.server.backend
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = self._read_chunks()
        else:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        backend._record(Received(self.command, self.path, headers, body))
        if backend.hang_up:
            self.close_connection = True  # read it all, answer nothing
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            seconds = float(query.get("seconds", "0"))
            if url.path == "/sleep" and backend.stopping.wait(seconds):
                self.close_connection = True
                return
            if url.path == "/stream":
                self._stream(int(query.get("count", "3")), float(query.get("gap", "0.4")))
                return
            reply = json.dumps(
                {
                    "backend": backend.name,
                    "method": self.command,
                    "path": self.path,
                    "headers": headers,
                    "body": body.decode(errors="replace"),
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply)
        except OSError:  # the gateway gave up on this request and closed the connection
            self.close_connection = True

    def _read_chunks(self) -> bytes:
        parts = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return b"".join(parts)

    def _stream(self, count: int, gap: float) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for index in range(count):
            data = f"data: {index}\n\n".encode()
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
            self.wfile.flush()
            if index + 1 < count and self.server.backend.stopping.wait(gap):
                self.close_connection = True
                return
        self.wfile.write(b"0\r\n\r\n")


@dataclass
class Backend:
    """One replica stand-in on a free port of 127.0.0.1; ``address`` goes in a route."""

    name: str
    hang_up: bool = False
    keep_alive_s: float = 60.0
    received: list[Received] = field(default_factory=list)
    connections_accepted: int = 0
    connections_timed_out: int = 0  # closed by this server, idle past keep_alive_s
    stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connections: set[socket.socket] = field(default_factory=set)
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def start(self) -> Backend:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.backend = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"backend-{self.name}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops accepting, wakes sleeping handlers, cuts open connections, joins threads."""
        if self._server is None or self._thread is None:
            return
        self.stopping.set()
        self._server.shutdown()
        self._thread.join()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins the handler threads
        self._server = self._thread = None

    def __enter__(self) -> Backend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def _timed_out(self) -> None:
        with self._lock:
            self.connections_timed_out += 1

    def _opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)
            self.connections_accepted += 1

    def _closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)


@contextlib.contextmanager
def refusing_address() -> Iterator[str]:
    """An address where nothing listens: a socket bound there without listening keeps the
    port from being handed out, and a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"
