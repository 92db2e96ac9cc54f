"""A client that speaks HTTP/1.1 byte by byte, for tests where the wire is the point,
and the standalone gateway's metrics as tests read them."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass
from typing import Any

import requests

from tests.support.gateway import PREFIX, StandaloneGateway
from tests.support.metrics import metric

TOKEN = "gateway-test-token"
OTHER_TOKEN = "someone-elses-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]  # names lower-cased, in order
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """One TCP connection to the gateway; responses are read off it in order."""

    def __init__(
        self, gateway: StandaloneGateway, timeout: float = 15.0, receive_buffer: int = 0
    ) -> None:
        self.gateway = gateway
        self.sock = socket.socket()
        if receive_buffer:  # fixed, not grown by the kernel as data comes
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(("127.0.0.1", gateway.port))
        except OSError:
            self.sock.close()
            raise
        self.file = self.sock.makefile("rb")

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def request_bytes(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        version: str = "HTTP/1.1",
        service: str = "svc",
    ) -> bytes:
        lines = [
            f"{method} {PREFIX}{service}/{path} {version}",
            f"Host: 127.0.0.1:{self.gateway.port}",
        ]
        lines += [f"{name}: {value}" for name, value in {**AUTH, **(headers or {})}.items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_head(self) -> RawResponse:
        status_line = self.file.readline()
        assert status_line.startswith(b"HTTP/1."), f"not a status line: {status_line!r}"
        status = int(status_line.split()[1])
        headers: list[tuple[str, str]] = []
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return RawResponse(status, headers)

    def read_response(self, head_only: bool = False) -> RawResponse:
        response = self.read_head()
        length = response.header("content-length")
        if head_only or response.status < 200 or response.status in (204, 304):
            return response
        if "chunked" in (response.header("transfer-encoding") or ""):
            response.body = self._read_chunked()
        elif length is not None:
            response.body = self._read_exactly(int(length))
        else:
            response.body = self.file.read()  # delimited by the close
        return response

    def _read_exactly(self, size: int) -> bytes:
        data = self.file.read(size)
        assert len(data) == size, f"the body ended after {len(data)} of {size} bytes"
        return data

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.file.readline().split(b";")[0], 16)
            if size == 0:
                while self.file.readline() not in (b"\r\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self._read_exactly(size))
            assert self.file.readline() == b"\r\n"

    def closed_by_gateway(self) -> bool:
        """Whether the gateway closed the connection (end of stream, nothing more)."""
        return self.file.read() == b""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seen_headers(inspected: dict[str, Any]) -> dict[str, list[str]]:
    """The headers the replica received, by lower-cased name."""
    found: dict[str, list[str]] = {}
    for name, value in inspected["headers"]:
        found.setdefault(name.lower(), []).append(value)
    return found


def gauge(gateway: StandaloneGateway, name: str, service_id: str) -> float:
    """One endpoint's sample of a gauge on ``/metrics``, 0 when it has none."""
    text = requests.get(gateway.base + "/metrics", timeout=10).text
    return metric(text, name, endpoint=service_id)


def in_flight(gateway: StandaloneGateway, service_id: str) -> float:
    return gauge(gateway, "moorage_gateway_in_flight", service_id)


def queued(gateway: StandaloneGateway, service_id: str) -> float:
    return gauge(gateway, "moorage_gateway_queue_length", service_id)


def take_the_only_slot(client: RawClient) -> None:
    """Starts an endless stream on ``capped`` (one request at a time) on ``client``."""
    client.send(client.request_bytes("GET", "drip?interval=0.1", service="capped"))
    assert client.read_head().status == 200
    assert client.file.readline()  # the chunk size line of the first drip
    assert in_flight(client.gateway, "capped") == 1


# -- request bodies --------------------------------------------------------------------


# -- raw connections to any port, and replicas that answer scripted bytes --------------


def connect(port: int, timeout: float = 15.0) -> socket.socket:
    """A plain TCP connection to 127.0.0.1:``port`` (a ``moorage serve`` or a gateway)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


def read_answer(sock: socket.socket) -> RawResponse:
    """Reads one response (Content-Length framed, or up to the close) off ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise AssertionError(f"the connection closed before a response head: {data!r}")
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:])
    ]
    response = RawResponse(int(lines[0].split()[1]), headers)
    length = response.header("content-length")
    if length is None:
        body += b"".join(iter(lambda: sock.recv(65536), b""))
    else:
        while len(body) < int(length):
            piece = sock.recv(65536)
            if not piece:
                break
            body += piece
    response.body = body
    return response


class ScriptedReplica:
    """A replica that records each request head and answers ``reply(head)`` verbatim:
    for replicas that break HTTP on purpose (hostile framing, unrequested upgrades).
    ``reply`` may return an iterator of pieces, sent one by one until the gateway
    hangs up; ``sent`` records how many bytes each answer got out."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.heads: list[bytes] = []
        self.sent: list[int] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> ScriptedReplica:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            data = b""
            try:
                while not self._stop.is_set():
                    while b"\r\n\r\n" not in data:
                        piece = conn.recv(65536)
                        if not piece:
                            return
                        data += piece
                    head, _, data = data.partition(b"\r\n\r\n")
                    self.heads.append(head)
                    answer = self.reply(head)
                    pieces = [answer] if isinstance(answer, bytes) else answer
                    sent = 0
                    try:
                        for piece in pieces:
                            if self._stop.is_set():
                                break
                            conn.sendall(piece)
                            sent += len(piece)
                    finally:
                        self.sent.append(sent)
            except OSError:
                return
