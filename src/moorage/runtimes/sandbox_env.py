"""A sandboxed replica's environment, and how it reaches the replica unseen and late.

What the replica gets is exactly its endpoint's ``env`` plus a few documented
variables (``replica_env``). Those values are often secrets (API keys, tokens),
and every local user can read every process's command line (``ps -eo args``), so
they are never put on a command line: they travel in an anonymous in-memory file
(``args_file``) that only moorage's user and root can open.

And they are the user's: ``LD_PRELOAD``, ``GLIBC_TUNABLES`` or ``GCONV_PATH`` in an
environment decide what code a process loads. So nothing runs with them that has
more rights than the replica: bwrap and ``setpriv`` (root, when moorage is) run
with an empty environment (``--clearenv``), and only after the drop to the
owner's uid does ``LOADER`` read the file and ``execve`` the replica's shell with
it (``env_payload``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

# The variables a sandboxed replica gets besides its endpoint's env (docs/runtimes.md).
DOCUMENTED_VARIABLES = (
    "PATH",
    "HOME",
    "PYTHONUNBUFFERED",
    "PORT",
    "MOORAGE_REPLICA_ID",
    "MOORAGE_ENDPOINT_ID",
)


def replica_env(
    deploy_env: Mapping[str, str],
    *,
    port: int,
    replica_id: str,
    endpoint_id: str,
    workdir: Path,
    path: str,
) -> dict[str, str]:
    """Exactly what a sandboxed replica's environment holds: its endpoint's ``env`` over
    a few defaults it may change (PATH, HOME, PYTHONUNBUFFERED), and its identity and
    port, which it may not. Nothing of moorage's own environment."""
    env = {"PATH": path, "HOME": str(workdir), "PYTHONUNBUFFERED": "1"}
    env.update(deploy_env)
    env.update(PORT=str(port), MOORAGE_REPLICA_ID=replica_id, MOORAGE_ENDPOINT_ID=endpoint_id)
    return env


def env_payload(env: Mapping[str, str]) -> bytes:
    """``NAME=VALUE`` for each variable, each one NUL-terminated, as ``LOADER`` reads
    them. A NUL inside a name or value (what an old store may hold) would split it,
    so it is refused with ValueError, as the OS refuses it in an environment; so is a
    name with ``=``, which would move the split."""
    encoded = bytearray()
    for name, value in sorted(env.items()):
        if "\0" in name or "\0" in value:
            raise ValueError(f"embedded null byte in variable {name!r}")
        if "=" in name or not name:
            raise ValueError(f"variable name {name!r} is empty or holds '='")
        encoded += os.fsencode(f"{name}={value}") + b"\0"
    return bytes(encoded)


# Runs in the sandbox after the drop to the owner's uid (``python -I -S -c LOADER FD
# SCRIPT NAME ARG...``), with an empty environment: reads the replica's variables
# from descriptor FD, closes it, and becomes ``/bin/sh -c SCRIPT NAME ARG...`` with
# exactly them. Only the standard library's ``os`` and ``sys``, nothing on a path.
LOADER = """import os, sys
fd = int(sys.argv[1])
chunks = []
while True:
    chunk = os.read(fd, 1 << 16)
    if not chunk:
        break
    chunks.append(chunk)
os.close(fd)
env = dict(item.split(b"=", 1) for item in b"".join(chunks).split(b"\\0") if item)
os.execve("/bin/sh", ["/bin/sh", "-c", *sys.argv[2:]], env)
"""


@contextlib.contextmanager
def args_file(data: bytes) -> Iterator[int]:
    """A descriptor of an anonymous in-memory file holding ``data``, positioned at its
    start, for a child to inherit (``pass_fds``) and read; closed here afterwards. Not
    a pipe: a pipe holds 64 KiB, less than an endpoint's env may take."""
    fd = os.memfd_create("moorage-replica-env", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)
