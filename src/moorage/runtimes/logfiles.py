"""Replica log files on disk: rotation at a size cap, tail from the end, cheap follow,
and removal after a retention.

The process runtime's replica writes its own ``output.log`` (an ``O_APPEND`` file
descriptor it inherits), so that replicas outlive a moorage crash. moorage
therefore rotates by copy-truncate: it copies the file to ``output.log.1`` and
truncates it to zero, and the replica's next append lands at offset 0. Bytes the
replica writes between the copy and the truncation are lost (microseconds; the
price of not sitting between the replica and its file). A replica that writes
faster than the checks run is stopped by the backstop, ``RLIMIT_FSIZE``, set on it
at spawn (see ``limit_file_size``).

Blocking work (reading, copying, removing) is done by the callers in a worker
thread; the async ``stream`` below does its reads through ``asyncio.to_thread``
and only ``stat``s the file on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROTATED_SUFFIX = ".1"
_BLOCK = 64 * 1024
_CHUNK = 1024 * 1024

log = logging.getLogger(__name__)


def rotated(path: Path) -> Path:
    """The one older file kept beside a log: ``output.log.1``."""
    return path.with_name(path.name + ROTATED_SUFFIX)


def _start_note(rotated_file: Path) -> Path:
    """Beside the rotated file: the offset in the old log where its copy starts."""
    return rotated_file.with_name(rotated_file.name + ".start")


def rotated_start(rotated_file: Path) -> int:
    """Where the rotated file's first byte was in the log it was copied from."""
    try:
        return int(_start_note(rotated_file).read_text())
    except (OSError, ValueError):
        return 0


def rotate_if_over(path: Path, max_bytes: int) -> bool:
    """Copy-truncates ``path`` into its rotated file when it holds more than
    ``max_bytes``; True when it did. Blocking: call it from a worker thread."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except OSError:
        return False
    target = rotated(path)
    temporary = target.with_name(target.name + ".tmp")
    try:
        # The older copy goes first, so that the disk never holds more than the
        # log and one copy of it (twice the cap), even in the middle of a rotation.
        target.unlink(missing_ok=True)
        with path.open("rb") as source, temporary.open("wb") as copy:
            # Only the newest max_bytes are kept: a replica that printed gigabytes
            # between two checks leaves a rotated file no bigger than the cap. Where
            # the copy starts in the old log is noted, for followers (see stream).
            start = max(0, os.fstat(source.fileno()).st_size - max_bytes)
            source.seek(start)
            shutil.copyfileobj(source, copy, _CHUNK)
        _start_note(target).write_text(str(start))
        os.replace(temporary, target)
        os.truncate(path, 0)
    except OSError:
        temporary.unlink(missing_ok=True)
        return False
    return True


def limit_file_size(max_bytes: int) -> Callable[[], None]:
    """A ``preexec_fn`` that caps the size of any file the child writes (the hard
    backstop against a replica that floods its log between two rotation checks).
    Inherited by everything the replica spawns; 0 means no cap."""

    def apply() -> None:
        if max_bytes > 0:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


def tail(path: Path, lines: int, max_bytes: int) -> bytes:
    """The last ``lines`` lines of the log (the rotated file first, then the current
    one), read backwards in blocks from the end, at most ``max_bytes``. Blocking."""
    if lines <= 0 or max_bytes <= 0:
        return b""
    blocks: list[bytes] = []  # newest first
    newlines = total = 0
    reached_start = True
    for name in (path, rotated(path)):
        try:
            handle = name.open("rb")
        except OSError:
            continue
        with handle:
            position = os.fstat(handle.fileno()).st_size
            while position > 0 and newlines <= lines and total < max_bytes:
                step = min(_BLOCK, position, max_bytes - total)
                position -= step
                handle.seek(position)
                block = handle.read(step)
                blocks.append(block)
                newlines += block.count(b"\n")
                total += len(block)
            reached_start = position == 0
        if newlines > lines or total >= max_bytes:
            break
    data = b"".join(reversed(blocks))
    kept = data.splitlines(keepends=True)
    if not reached_start and total >= max_bytes and newlines <= lines:
        kept = kept[1:]  # cut by the byte bound: the first line is partial
    return b"".join(kept[-lines:])


@dataclass(frozen=True)
class Segment:
    path: Path
    start: int
    end: int


def whole(path: Path, max_bytes: int) -> tuple[list[Segment], int, int]:
    """What to send for "all of it": the segments of the rotated and current file
    holding the last ``max_bytes``, and the current file's inode and size (where a
    follower goes on from). Blocking."""
    try:
        status = path.stat()
    except OSError:
        return [], 0, 0
    segments = []
    budget = max_bytes
    end = status.st_size
    start = max(0, end - budget)
    segments.append(Segment(path, start, end))
    budget -= end - start
    if budget > 0:
        with contextlib.suppress(OSError):
            old_end = rotated(path).stat().st_size
            segments.insert(0, Segment(rotated(path), max(0, old_end - budget), old_end))
    return [s for s in segments if s.end > s.start], status.st_ino, status.st_size


def read_range(path: Path, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of a file (fewer if it shrank). Blocking."""
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            return handle.read(max(0, end - start))
    except OSError:
        return b""


def _segment_chunks(segments: list[Segment]) -> Iterator[tuple[Path, int, int]]:
    for segment in segments:
        for start in range(segment.start, segment.end, _CHUNK):
            yield segment.path, start, min(segment.end, start + _CHUNK)


def _identity(path: Path) -> tuple[int, int]:
    try:
        status = path.stat()
    except OSError:
        return 0, 0
    return status.st_ino, status.st_size


async def stream(
    path: Path,
    *,
    tail_lines: int | None,
    follow: bool,
    max_bytes: int,
    running: Callable[[], Awaitable[bool]],
    poll_s: float = 0.25,
    liveness_s: float = 2.0,
) -> AsyncIterator[bytes]:
    """The log's last ``tail_lines`` lines (all of it when None, bounded by
    ``max_bytes``), then with ``follow`` what is appended, until ``running`` says the
    replica has stopped. A follower ``stat``s the file every ``poll_s`` (size and
    inode, nothing else) and asks ``running`` only every ``liveness_s``."""
    if tail_lines is None:
        segments, inode, position = await asyncio.to_thread(whole, path, max_bytes)
        for name, start, end in _segment_chunks(segments):
            yield await asyncio.to_thread(read_range, name, start, end)
    else:
        inode, position = await asyncio.to_thread(_identity, path)
        data = await asyncio.to_thread(tail, path, tail_lines, max_bytes)
        if data:
            yield data
    if not follow:
        return
    loop = asyncio.get_running_loop()
    next_liveness = loop.time() + liveness_s
    stopping = False
    while True:
        try:
            status = os.stat(path)  # metadata only: cheap enough for the loop
        except FileNotFoundError:
            return
        if status.st_ino != inode:  # replaced: start over at its beginning
            inode, position = status.st_ino, 0
        if status.st_size < position:  # copy-truncated: finish what moved to .1
            older = rotated(path)
            offset = max(0, position - await asyncio.to_thread(rotated_start, older))
            rest = await asyncio.to_thread(read_range, older, offset, offset + max_bytes)
            if rest:
                yield rest
            position = 0
        if status.st_size > position:
            end = min(status.st_size, position + _CHUNK)
            chunk = await asyncio.to_thread(read_range, path, position, end)
            position += len(chunk)
            if chunk:
                yield chunk
            if end < status.st_size:
                continue  # more is there already
        if stopping:
            return
        if loop.time() >= next_liveness:
            next_liveness = loop.time() + liveness_s
            if not await running():
                stopping = True  # one more look for what it printed last
                continue
        await asyncio.sleep(poll_s)


def remove_stale(root: Path, retention_s: float, *, record: str, now: float | None = None) -> int:
    """Removes replica folders under ``root`` that have no ``record`` (no live
    replica: the runtime deletes it when it stops one) and nothing in them changed
    for ``retention_s``. Returns how many went. Blocking."""
    now = time.time() if now is None else now
    removed = 0
    try:
        folders = [f for f in root.iterdir() if f.is_dir()]
    except OSError:
        return 0
    for folder in folders:
        if (folder / record).exists():
            continue
        try:
            newest = max([folder.stat().st_mtime] + [f.stat().st_mtime for f in folder.iterdir()])
        except OSError:
            continue
        if now - newest > retention_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed += not folder.exists()
    return removed


def rotate_live(root: Path, max_bytes: int, *, record: str, output: str) -> int:
    """Rotates the log of every live replica (one with a ``record``) past
    ``max_bytes``. Returns how many were rotated. Blocking."""
    rotated_count = 0
    try:
        records = list(root.glob(f"*/{record}"))
    except OSError:
        return 0
    for found in records:
        rotated_count += rotate_if_over(found.parent / output, max_bytes)
    return rotated_count


class Housekeeper:
    """Keeps the replica folders under ``root`` bounded: rotates live replicas' logs
    past ``max_bytes`` every ``interval_s``, and removes folders of replicas that
    stopped more than ``retention_s`` ago. All of it in a worker thread."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        retention_s: float,
        interval_s: float,
        record: str,
        output: str,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self.interval_s = interval_s
        self.record = record
        self.output = output
        # Removal scans every folder: it need not run more often than the retention.
        self._sweep_every_s = max(interval_s, min(retention_s / 2, 60.0))
        self._next_sweep = 0.0

    def once(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        rotate_live(self.root, self.max_bytes, record=self.record, output=self.output)
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every_s
            remove_stale(self.root, self.retention_s, record=self.record)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.once)
            except Exception:  # a disk error now must not end housekeeping for good
                log.exception("replica log housekeeping failed; trying again")
            await asyncio.sleep(self.interval_s)
