"""A container's output as whole lines, read from the engine's log stream.

The engine sends what a container printed as frames, each tagged with the stream it
came from (stdout or stderr) and cut wherever the app's writes were, not at line
ends: ``print("x")`` may arrive as ``x`` then ``\\n``. The docker SDK's
``container.logs(stream=True)`` drops the tag, so a stdout line still being written
and a stderr line written meanwhile used to run together (``partial-` + ``err\\n`` +
``\\n``: two lines as one, then an empty one). ``LineAssembler`` joins each stream's
frames on their own, and ``read`` asks the engine for the tags.

A ``tail`` is counted here, over whole lines, rather than by the engine: Podman's
tail joins a partial line to the line before it (``b\\n`` + ``c`` + ``d\\n`` tails as
``bc\\n``, ``d\\n``). A follower with a tail reads the log twice: once to the end, for
its last lines, then followed, skipping the frames the first read saw (an engine's
log is append-only, so they come first again, in the same frames).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator

import docker
from docker.errors import APIError
from docker.types import CancellableStream
from requests import Response

STDOUT, STDERR = 1, 2
_HEADER = struct.Struct(">BxxxL")
# A stream that prints without newlines is cut into lines this long (as the logs
# service cuts any runtime's), so memory stays bounded per reader.
MAX_LINE_BYTES = 64 * 1024
_CONNECT_TIMEOUT_S = 10.0


class LineAssembler:
    """Whole lines from the frames of several streams, each joined on its own. Pure."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        # Insertion order: the stream whose unfinished line began first flushes first.
        self._pending: dict[int, bytes] = {}

    def feed(self, stream: int, data: bytes) -> list[bytes]:
        """The lines this frame completes (each ending in ``\\n``); the rest waits."""
        pending = self._pending.pop(stream, b"") + data
        *lines, rest = pending.split(b"\n")
        done = [line + b"\n" for line in lines]
        while len(rest) > self.max_line_bytes:
            done.append(rest[: self.max_line_bytes] + b"\n")
            rest = rest[self.max_line_bytes :]
        if rest:
            self._pending[stream] = rest
        return done

    def flush(self) -> list[bytes]:
        """The unfinished lines, each ended: the output ended (or was read to its end)
        without their newline."""
        lines = [rest + b"\n" for rest in self._pending.values()]
        self._pending.clear()
        return lines


def _exactly(response: Response, size: int) -> bytes | None:
    """``size`` bytes of the body, or None where it ends first."""
    data = b""
    while len(data) < size:
        chunk = response.raw.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _frames(response: Response) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) of each frame of a non-TTY container's log stream."""
    with response:
        while (header := _exactly(response, _HEADER.size)) is not None:
            stream, length = _HEADER.unpack(header)
            payload = _exactly(response, length) if length else b""
            if payload is None:
                return
            if payload:
                yield stream, payload


def open_frames(
    client: docker.DockerClient, container_id: str, *, tail: int | str, follow: bool
) -> CancellableStream[tuple[int, bytes]] | None:
    """The container's log as (stream, payload) frames, or None where it is gone. The
    SDK has no call that keeps the stream tags, so this is its own GET of the Engine
    API's ``/containers/{id}/logs``, with no read timeout (a follower waits)."""
    api = client.api
    response = api.get(
        f"{api.base_url}/v{api.api_version}/containers/{container_id}/logs",
        params={"stdout": "1", "stderr": "1", "follow": str(int(follow)), "tail": str(tail)},
        stream=True,
        timeout=(_CONNECT_TIMEOUT_S, None),
    )
    if response.status_code == 404:
        response.close()
        return None
    if not response.ok:
        message = response.text
        response.close()
        raise APIError(f"reading the logs of {container_id}: {message}", response)
    return CancellableStream(_frames(response), response)


def backlog(
    frames: Iterator[tuple[int, bytes]],
    tail: int | None,
    assembler: LineAssembler,
    *,
    ended: bool,
) -> tuple[list[bytes], int]:
    """The last ``tail`` lines (all when None) of a log read to its end, and how many
    frames it had. Where the read ends the output (``ended``), unfinished lines are
    lines too; otherwise (a follower goes on) they stay in ``assembler``. Blocking."""
    kept: deque[bytes] = deque(maxlen=tail)
    count = 0
    for stream, payload in frames:
        count += 1
        kept.extend(assembler.feed(stream, payload))
    if ended:
        kept.extend(assembler.flush())
    return list(kept), count
