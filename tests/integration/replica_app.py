"""A tiny replica for the runtime tests, run as a real subprocess or container.

It serves ``GET /`` on 127.0.0.1:$PORT (``$APP_HOST`` in a container) with its
pid and environment as JSON, prints ``POST /say``'s body, and exits with
``POST /exit/<code>`` (printing the body to stderr first): the protocol the fake
runtime's replicas speak too.
``--ignore-term`` makes it ignore SIGTERM (an app that will not shut down);
``--term-note FILE`` makes it write FILE and exit 0 on SIGTERM (a polite app);
``--pid-file FILE`` writes its pid to FILE once its signal handling is set up;
``--worker`` serves nothing and just waits (a helper process the app started).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"pid": os.getpid(), "env": dict(os.environ)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        text = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        code = self.path.removeprefix("/exit/")
        if self.path == "/say":
            _emit(text, 1)
        elif not code.isdigit():
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.wfile.flush()
        if code.isdigit():
            _emit(text, 2)
            os._exit(int(code))

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the runtime's output log is for the app's own lines."""


def _emit(text: str, fd: int) -> None:
    """One write per call, newline included: Podman before 4.7 garbles ``logs --tail``
    around a line whose newline came in a write of its own (podman#19545)."""
    os.write(fd, (text + "\n").encode())


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--term-note")
    parser.add_argument("--pid-file")
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args(argv)
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif args.term_note:
        note = Path(args.term_note)

        def _on_term(_signum: int, _frame: FrameType | None) -> None:
            note.write_text("terminated politely")
            os._exit(0)

        signal.signal(signal.SIGTERM, _on_term)
    if args.pid_file:
        Path(args.pid_file).write_text(str(os.getpid()))
    if args.worker:
        time.sleep(300)
        return
    server = ThreadingHTTPServer(
        (os.environ.get("APP_HOST", "127.0.0.1"), int(os.environ["PORT"])), _Handler
    )
    _emit(f"replica app {os.getpid()} listening on {os.environ['PORT']}", 1)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
