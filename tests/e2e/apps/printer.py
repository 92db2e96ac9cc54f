"""An app that prints known lines, some in pieces and some on stderr, then serves
HTTP without logging a request; ``GET /say`` prints a few more. With
``INTERLEAVE=1`` a stderr line is written while a stdout line is half written (an
engine keeps the two streams apart; a process runtime's single file cannot)."""

from __future__ import annotations

import http.server
import os
import sys
import time
from typing import Any, TextIO

INTERLEAVE = os.environ.get("INTERLEAVE") == "1"


def write(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()
    time.sleep(0.15)  # each write its own piece, in this order


write(sys.stdout, "one\n")
write(sys.stdout, "two\nthree\n")
write(sys.stdout, "par")
if INTERLEAVE:
    write(sys.stderr, "err-between\n")
write(sys.stdout, "tial\n")
write(sys.stderr, "err-one\n")
write(sys.stdout, "four")
write(sys.stdout, "\n")  # print("four") may arrive so: the text, then its newline
write(sys.stdout, "waiting")  # no newline yet


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/say":
            write(sys.stdout, " done\n")
            write(sys.stdout, "live-par")
            if INTERLEAVE:
                write(sys.stderr, "live-err\n")
            write(sys.stdout, "tial\n")
            write(sys.stderr, "live-two\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
