"""The SDK against a server that is not moorage, or lies: what it costs the client.

A user may point a client at the wrong port or at a server someone else runs. The
answers here never take more than a bounded amount of memory or time, and each ends
in one ``ApiError`` saying what happened, never a validation traceback. A real
listener on loopback plays the server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from moorage.sdk import ApiError, AsyncClient, Client

SEEN: list[tuple[str, str]] = []


class Hostile(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what arrived from SEEN."""

    def _answer(self) -> None:
        SEEN.append((self.command, self.path))
        if self.path.startswith("/v1/inference-service/flavor"):
            self._endless()
        elif self.path.startswith("/v1/quota"):
            self._trickle()
        elif self.path.startswith("/v1/secrets"):
            self._slow_headers()
        elif "/logs" in self.path:
            self._trickle()
        elif self.path.startswith("/v1/budgets"):
            self._send(200, b'{"not": "a budget list"}')
        elif self.path.startswith("/v1/users"):
            self._send(200, b"<html>a proxy's page</html>", "text/html")
        elif self.path.startswith("/v1/tokens"):
            self.send_response(307)
            self.send_header("Location", "http://evil.example/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b'{"code": "not_found", "message": "nothing here"}')

    do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 (http.server's names)

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        chunk = b"[" + b"1," * 65536
        try:
            while True:
                self.wfile.write(chunk)
        except OSError:
            return

    def _slow_headers(self) -> None:
        self.send_response_only(200)
        try:
            for n in range(600):
                self.wfile.write(f"X-Slow-{n}: y\r\n".encode())
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            return

    def _trickle(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            for _ in range(600):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            return


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_endless_answer_is_dropped_at_the_bound(hostile: str) -> None:
    started = time.monotonic()
    with Client(hostile, token="t") as client, pytest.raises(ApiError) as error:
        client.list_flavors()
    assert error.value.code == "answer_too_large"
    assert "64 MiB" in error.value.message
    assert time.monotonic() - started < 60


def test_an_answer_a_byte_at_a_time_is_given_up_at_its_deadline(hostile: str) -> None:
    started = time.monotonic()
    with (
        Client(hostile, token="t", answer_within_s=1.5) as client,
        pytest.raises(ApiError) as error,
    ):
        client.quota()
    assert error.value.code == "answer_too_slow"
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("call", ["budgets", "list_users", "list_tokens"])
def test_an_answer_that_is_not_the_apis_is_one_error(hostile: str, call: str) -> None:
    with Client(hostile, token="t") as client, pytest.raises(ApiError) as error:
        getattr(client, call)()
    assert error.value.code == "bad_answer"
    assert hostile in error.value.message


def test_dot_segments_stay_one_segment(hostile: str) -> None:
    SEEN.clear()
    with Client(hostile, token="t") as client:
        for ref in (".", ".."):
            with pytest.raises(ApiError):
                client.delete_endpoint(ref)
            with pytest.raises(ApiError):
                client.stop_endpoint(ref)
    assert SEEN == [
        ("DELETE", "/v1/inference-service/%2E"),
        ("POST", "/v1/inference-service/%2E/stop"),
        ("DELETE", "/v1/inference-service/%2E%2E"),
        ("POST", "/v1/inference-service/%2E%2E/stop"),
    ]


def test_the_servers_refusal_keeps_its_code_and_message(hostile: str) -> None:
    with Client(hostile, token="t") as client, pytest.raises(ApiError) as error:
        client.get_endpoint("abc")
    assert (error.value.status, error.value.code, error.value.message) == (
        404,
        "not_found",
        "nothing here",
    )


def test_headers_a_byte_at_a_time_are_given_up_at_the_deadline(hostile: str) -> None:
    """The deadline counts from the request, not from the answer's headers."""
    started = time.monotonic()
    with (
        Client(hostile, token="t", answer_within_s=1.5) as client,
        pytest.raises(ApiError) as error,
    ):
        client.list_secrets()
    assert error.value.code == "answer_too_slow"
    assert time.monotonic() - started < 10

    async def slow() -> ApiError:
        async with AsyncClient(hostile, token="t", answer_within_s=1.5) as client:
            try:
                await client.list_secrets()
            except ApiError as error:
                return error
        raise AssertionError("no error")

    started = time.monotonic()
    assert asyncio.run(slow()).code == "answer_too_slow"
    assert time.monotonic() - started < 10


def test_a_log_read_without_follow_is_bounded_as_any_answer(hostile: str) -> None:
    started = time.monotonic()
    with (
        Client(hostile, token="t", answer_within_s=1.5) as client,
        pytest.raises(ApiError) as error,
    ):
        list(client.logs("abc"))
    assert error.value.code == "answer_too_slow"
    assert time.monotonic() - started < 10


def test_an_empty_id_is_refused_before_anything_is_sent(hostile: str) -> None:
    SEEN.clear()
    with Client(hostile, token="t") as client:
        for call in (client.get_endpoint, client.delete_endpoint, client.delete_secret):
            with pytest.raises(ApiError) as error:
                call("")
            assert error.value.code == "invalid_argument"
    assert SEEN == []
