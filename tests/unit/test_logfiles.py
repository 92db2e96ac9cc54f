"""Replica log files: copy-truncate rotation, tail from the end across the rotated
file, follow across a rotation, and removal after the retention."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from moorage.runtimes import logfiles


def _lines(count: int, prefix: str = "line") -> bytes:
    return b"".join(f"{prefix} {n}\n".encode() for n in range(count))


def test_rotation_copies_then_truncates_past_the_cap(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(_lines(100))
    assert not logfiles.rotate_if_over(log, 10_000)
    assert logfiles.rotate_if_over(log, 100)
    assert log.stat().st_size == 0
    # The rotated file keeps the newest 100 bytes only, whatever was printed meanwhile.
    assert logfiles.rotated(log).read_bytes() == _lines(100)[-100:]


def test_a_flood_between_two_checks_leaves_a_rotated_file_within_the_cap(
    tmp_path: Path,
) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(_lines(200_000, "flood"))  # about 2.5 MB, against a 64 KiB cap
    logfiles.rotated(log).write_bytes(b"older\n")
    assert logfiles.rotate_if_over(log, 65536)
    kept = logfiles.rotated(log).read_bytes()
    assert len(kept) == 65536
    assert kept.endswith(b"flood 199999\n")
    assert log.stat().st_size == 0


def test_tail_reads_from_the_end_across_the_rotated_file(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    logfiles.rotated(log).write_bytes(_lines(200_000, "old"))
    log.write_bytes(_lines(3, "new"))
    assert logfiles.tail(log, 2, 1 << 20) == b"new 1\nnew 2\n"
    assert logfiles.tail(log, 5, 1 << 20) == b"old 199998\nold 199999\nnew 0\nnew 1\nnew 2\n"
    assert logfiles.tail(log, 0, 1 << 20) == b""
    bounded = logfiles.tail(log, 100_000, 1000)  # the byte bound wins; whole lines only
    assert len(bounded) <= 1000
    assert bounded.startswith(b"old ")
    assert bounded.endswith(b"new 2\n")


def test_follow_goes_on_across_a_rotation_and_ends_with_the_replica(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"first\n")
    alive = True

    async def running() -> bool:
        return alive

    async def scenario() -> bytes:
        nonlocal alive
        seen = b""

        async def collect() -> None:
            nonlocal seen
            async for chunk in logfiles.stream(
                log,
                tail_lines=None,
                follow=True,
                max_bytes=1 << 20,
                running=running,
                poll_s=0.01,
                liveness_s=0.05,
            ):
                seen += chunk

        task = asyncio.create_task(collect())
        await asyncio.sleep(0.1)
        with log.open("ab") as handle:
            handle.write(b"second\n")
        await asyncio.sleep(0.1)
        with log.open("ab") as handle:
            handle.write(b"third\n")
        logfiles.rotate_if_over(log, 10)  # keeps "ond\nthird\n": what was not read yet
        with log.open("ab") as handle:
            handle.write(b"fourth\n")
        await asyncio.sleep(0.1)
        alive = False
        await asyncio.wait_for(task, 5)
        return seen

    assert asyncio.run(scenario()) == b"first\nsecond\nthird\nfourth\n"


def test_stale_folders_go_after_the_retention_live_ones_stay(tmp_path: Path) -> None:
    live, stopped, recent = tmp_path / "live", tmp_path / "stopped", tmp_path / "recent"
    for folder in (live, stopped, recent):
        folder.mkdir()
        (folder / "output.log").write_bytes(b"x\n")
    (live / "replica.json").write_text("{}")
    old = 1_000_000.0
    for folder in (live, stopped):
        for path in (*folder.iterdir(), folder):
            os.utime(path, (old, old))
    removed = logfiles.remove_stale(tmp_path, 60, record="replica.json", now=old + 3600)
    assert removed == 1
    assert live.exists()
    assert not stopped.exists()
    assert recent.exists()  # changed later than the retention allows
