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

Each socket's address is read too: an app in a container that binds 127.0.0.1 listens
where nothing outside the container reaches, and never becomes ready. The runtime
decides whether that matters (``Listening.inside_only``): a sandboxed replica of the
process runtime is reached through a bridge inside its namespace, so loopback is
right there.
"""

from __future__ import annotations

import ipaddress
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
    """The port the app was given (``$PORT``) and the TCP ports it listens on.

    ``inside_only`` names ("127.0.0.1:8000") the ports it listens on at a loopback
    address alone, set only by a runtime that reaches its replicas from outside their
    network namespace (a container's): there, such a port can never be reached."""

    given_port: int
    ports: tuple[int, ...]
    inside_only: tuple[str, ...] = ()


@runtime_checkable
class PortWatcher(Protocol):
    """A runtime that can tell which ports a running replica listens on."""

    async def listening(self, replica_id: str) -> Listening | None:
        """None when the replica does not run or its ports cannot be read."""
        ...


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_tcp_table(text: str, inodes: Set[int] | None) -> set[int]:
    """Local ports of the LISTEN sockets in a ``/proc/<pid>/net/tcp{,6}`` table; only
    those whose inode is in ``inodes`` unless that is None."""
    return {port for _, port in parse_listeners(text, inodes)}


def parse_listeners(text: str, inodes: Set[int] | None) -> set[tuple[Address, int]]:
    """Local address and port of each LISTEN socket in a ``/proc/<pid>/net/tcp{,6}``
    table; only those whose inode is in ``inodes`` unless that is None."""
    found: set[tuple[Address, int]] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _LISTEN:
            continue
        try:
            address, port = fields[1].rsplit(":", 1)
            local = (_address(address), int(port, 16))
            inode = int(fields[9])
        except (IndexError, ValueError):
            continue
        if inodes is None or inode in inodes:
            found.add(local)
    return found


def _address(text: str) -> Address:
    """``/proc/net/tcp``'s hex address: 32-bit words, each in the host's byte order
    (little-endian on the machines moorage runs on)."""
    raw = bytes.fromhex(text)
    if len(raw) not in (4, 16):
        raise ValueError(text)
    ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(ordered)


def inside_only(listeners: Iterable[tuple[Address, int]]) -> tuple[str, ...]:
    """The ports listened on at loopback addresses alone, each as its first address
    and port ("127.0.0.1:8000", "[::1]:8000")."""
    by_port: dict[int, list[Address]] = {}
    for address, port in listeners:
        by_port.setdefault(port, []).append(address)
    named: list[str] = []
    for port, addresses in sorted(by_port.items()):
        if all(_loopback(a) for a in addresses):
            first = min(addresses, key=lambda a: (a.version, a))
            host = f"[{first}]" if first.version == 6 else str(first)
            named.append(f"{host}:{port}")
    return tuple(named)


def _loopback(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


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
    listeners = listeners_of(pids)
    return None if listeners is None else tuple(sorted({port for _, port in listeners}))


def listeners_of(pids: Iterable[int]) -> set[tuple[Address, int]] | None:
    """The TCP addresses and ports these processes listen on; None when none of them
    could be read."""
    own = _netns("self")
    by_netns: dict[str, list[int]] = {}
    for pid in pids:
        netns = _netns(str(pid))
        if netns is not None:
            by_netns.setdefault(netns, []).append(pid)
    if not by_netns:
        return None
    found: set[tuple[Address, int]] = set()
    for netns, members in by_netns.items():
        inodes = _socket_inodes(members) if netns == own else None
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{members[0]}/net/{table}", "rb") as handle:
                    text = handle.read(_MAX_TABLE_BYTES).decode("ascii", "replace")
            except OSError:
                continue
            found |= parse_listeners(text, inodes)
    return found


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
