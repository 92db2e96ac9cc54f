"""Which TCP ports a replica's processes listen on, read from ``/proc``.

While a replica is not ready yet, the controller asks its runtime (at most once a
second) so ``status_info`` can say "the app listens on 8080, not on $PORT 41234" the
moment the app opens the wrong port, instead of a silent 15-minute timeout.

The cheap way, per process: ``/proc/<pid>/net/tcp`` and ``tcp6`` list the sockets of
the process's network namespace. A sandboxed replica (process runtime) or a container
has a namespace of its own, so every listening socket there is the replica's. A
replica in moorage's own namespace (the admin's, unsandboxed) shares it with every
other process of the host: there only sockets the replica's processes hold (their
``/proc/<pid>/fd``) count.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column
_MAX_PIDS = 256  # a replica that forks more is still read, its first 256 processes
# A table is read up to this many bytes (about 7,000 sockets): a replica that opens
# a hundred thousand sockets cannot make the once-a-second read expensive.
_MAX_TABLE_BYTES = 1024 * 1024
_MAX_FDS = 65536  # descriptors looked at per read, over all of a replica's processes


@dataclass(frozen=True)
class Listening:
    """The port the app was given (``$PORT``) and the TCP ports it listens on."""

    given_port: int
    ports: tuple[int, ...]


@runtime_checkable
class PortWatcher(Protocol):
    """A runtime that can tell which ports a running replica listens on."""

    async def listening(self, replica_id: str) -> Listening | None:
        """None when the replica does not run or its ports cannot be read."""
        ...


def parse_tcp_table(text: str, inodes: Set[int] | None) -> set[int]:
    """Local ports of the LISTEN sockets in a ``/proc/<pid>/net/tcp{,6}`` table; only
    those whose inode is in ``inodes`` unless that is None."""
    ports: set[int] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _LISTEN:
            continue
        try:
            port = int(fields[1].rsplit(":", 1)[1], 16)
            inode = int(fields[9])
        except (IndexError, ValueError):
            continue
        if inodes is None or inode in inodes:
            ports.add(port)
    return ports


def group_pids(pgid: int) -> list[int]:
    """The processes of a process group (a replica of the process runtime is one)."""
    pids: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            pids.append(int(stat.parent.name))
            if len(pids) >= _MAX_PIDS:
                break
    return pids


def ports_of(pids: Iterable[int]) -> tuple[int, ...] | None:
    """The TCP ports these processes listen on; None when none of them could be read."""
    own = _netns("self")
    by_netns: dict[str, list[int]] = {}
    for pid in pids:
        netns = _netns(str(pid))
        if netns is not None:
            by_netns.setdefault(netns, []).append(pid)
    if not by_netns:
        return None
    ports: set[int] = set()
    for netns, members in by_netns.items():
        inodes = _socket_inodes(members) if netns == own else None
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{members[0]}/net/{table}", "rb") as handle:
                    text = handle.read(_MAX_TABLE_BYTES).decode("ascii", "replace")
            except OSError:
                continue
            ports |= parse_tcp_table(text, inodes)
    return tuple(sorted(ports))


def _netns(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _socket_inodes(pids: Iterable[int]) -> set[int]:
    """The sockets these processes hold, from their first ``_MAX_FDS`` descriptors in all."""
    inodes: set[int] = set()
    budget = _MAX_FDS
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")[:budget]
        except OSError:
            continue
        budget -= len(fds)
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes
