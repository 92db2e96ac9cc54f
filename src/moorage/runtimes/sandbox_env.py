"""A sandboxed replica's environment, and how it reaches the sandbox unseen.

What the replica gets is exactly its endpoint's ``env`` plus a few documented
variables (``replica_env``). Those values are often secrets (API keys, tokens),
and every local user can read every process's command line (``ps -eo args``), so
they are never put on bwrap's: bwrap reads its ``--setenv`` options from an
anonymous in-memory file (``--args FD``, ``args_file``) that only moorage's user
and root can open, and closes it before anything of the replica runs. bwrap's
own environment stays moorage's launch token alone (``--clearenv`` drops it).
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


def setenv_args(env: Mapping[str, str]) -> bytes:
    """``--setenv NAME VALUE`` for each variable, as ``bwrap --args FD`` reads options:
    each one NUL-terminated. A NUL inside a name or value (what an old store may hold)
    would split it into other options, so it is refused with ValueError, as the OS
    refuses it in an environment."""
    encoded = bytearray()
    for name, value in sorted(env.items()):
        for text in (name, value):
            if "\0" in text:
                raise ValueError(f"embedded null byte in variable {name!r}")
        for part in ("--setenv", name, value):
            encoded += os.fsencode(part) + b"\0"
    return bytes(encoded)


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
