"""The process runtime's sandbox for normal users' replicas: bubblewrap (``bwrap``).

A replica runs hostile code. In its sandbox it sees the host's files read-only,
minus what is moorage's (``MOORAGE_HOME``, the home of moorage's user, a SQLite
store or config file kept elsewhere), where people and services keep theirs
(``/home``, ``/root``, ``/run``, ``/var/lib``, ...: ``sandbox_config``) and the
host's temporary directories, each replaced by an empty tmpfs; a fresh ``/dev``,
``/tmp`` and ``/proc`` (its own pid namespace: it sees only its own processes); its own
network, IPC and UTS namespaces (it can reach nothing, not even the host's
loopback); and one writable directory, its own ``work``. Its environment is
exactly ``deploy_metadata.env`` and the documented variables (``sandbox_env``),
handed over in a file descriptor, never on a command line, and set only after the
drop to the owner's uid (bwrap and setpriv run with none of them).

When moorage runs as root, bwrap runs privileged (so it can mount what only
root can reach, such as a 0700 ``MOORAGE_HOME``), creates no user namespace,
and the command inside drops to its owner's uid (``models/sandbox_uids.py``: one
per owner, so no two owners' replicas share one) with ``setpriv`` before
anything of the user runs: the replica's real uid is then unprivileged on the
host, not root remapped (``bwrap --uid`` run as root keeps the outer uid 0).
When moorage is not root, bwrap uses an unprivileged user namespace and the
replica keeps moorage's uid, so moorage's files are hidden by the mounts.

The way in is a Unix socket (see ``bridge``): the sandbox's network namespace
has no route from the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from moorage.runtimes import bridge
from moorage.runtimes.private_dirs import owned_dir
from moorage.runtimes.sandbox_config import SandboxConfig, SandboxUnavailable, build_config
from moorage.runtimes.sandbox_env import (
    DOCUMENTED_VARIABLES,
    LOADER,
    args_file,
    env_payload,
    replica_env,
)
from moorage.settings import Settings

__all__ = [
    "DOCUMENTED_VARIABLES",
    "Sandbox",
    "SandboxConfig",
    "SandboxUnavailable",
    "build_config",
    "replica_env",
]

WORK_DIR = "work"
SOCKET_FILE = "replica.sock"
# sockaddr_un.sun_path holds 108 bytes, the last a NUL.
MAX_SOCKET_PATH = 107
PROBE_TIMEOUT_S = 30.0
_BRIDGE_SOURCE = Path(bridge.__file__).read_text()

# Runs inside the sandbox, as the replica's user: the bridge in the background on the
# listening socket (standard input, moved to fd 3 because a background job's stdin
# is /dev/null), then the user's command in place of this shell, with the listener
# closed and stdin from /dev/null, as an unsandboxed replica has it.
_WRAPPER = (
    'cd -- "$1" || exit 111\n'
    "unset OLDPWD\n"
    "exec 3<&0\n"
    '"$2" -I -c "$3" 0<&3 3<&- &\n'
    'exec /bin/sh -c "$4" 0</dev/null 3<&-\n'
)


# The device files every CUDA program opens besides its GPUs' own: the driver's
# control device and unified memory's, and the display driver's where there is one;
# bound only when present, and only for a replica given GPUs.
GPU_CONTROL_DEVICES = (
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
)


def _ancestors_to_create(path: Path, tmpfs_roots: Sequence[Path]) -> list[Path]:
    """Ancestors of ``path`` that lie inside a tmpfs the sandbox mounts, outermost first:
    bwrap would create them 0700 (unreachable for the replica's uid), so they are
    created explicitly, 0755."""
    return [
        parent
        for parent in reversed(path.parents)
        if any(parent != root and parent.is_relative_to(root) for root in tmpfs_roots)
    ]


def mountable(config: SandboxConfig, path: str) -> bool:
    """Whether a volume can be mounted at ``path`` in the sandbox, whose root is the
    host's, read-only: the path lies in a folder the sandbox mounts a tmpfs on (``/tmp``,
    ``/mnt``, ``/srv``, ``/home``, ...: its parents are created there), or is a folder
    the host has. Never where moorage keeps the replica's work folder (``MOORAGE_HOME``),
    nor a folder above it: the work folder's bind would then go through the volume;
    nor at, in or above a folder moorage shows read-only (``exposed``)."""
    target = Path(path)
    if config.home.is_relative_to(target) or target.is_relative_to(config.home):
        return False
    # Nor over what moorage shows the sandbox for itself (its interpreter, which the
    # loader and the bridge run on): the replica would only break its own start.
    if any(e.is_relative_to(target) or target.is_relative_to(e) for e in config.exposed):
        return False
    roots = [*config.writable_tmp, *config.hidden_dirs]
    if any(target.is_relative_to(root) for root in roots):
        return True
    return target.is_dir() and target.resolve() == target


def bwrap_args(
    config: SandboxConfig,
    *,
    workdir: Path,
    command: str,
    env_fd: int,
    workdir_fd: int,
    mounts: Sequence[tuple[int, str]] = (),
    shm_size_mb: int | None = None,
    gpu_devices: Sequence[Path] = (),
) -> list[str]:
    """The whole command line that runs ``sh -c command`` sandboxed in ``workdir``, with
    the environment ``LOADER`` reads from ``env_fd`` after the drop to the owner's uid
    (``sandbox_env.env_payload``): no value of it is on the command line, which every
    local user can read, nor in any process that has more rights than the replica. ``mounts`` are
    (open folder, path inside) pairs bound writable (volumes, the model cache);
    ``shm_size_mb`` sizes the sandbox's ``/dev/shm``. ``gpu_devices`` are the device
    files of the replica's own GPUs (``/dev/nvidiaN``), bound at ``/dev/<name>`` with
    ``GPU_CONTROL_DEVICES``: the sandbox's ``/dev`` holds no other GPU, so the
    replica can open no GPU it was not given.

    Every folder a replica can write is bound from a descriptor moorage opened
    (``open_mount``), never by its path: bwrap, running as root, resolves a path
    source after the earlier binds are in place, so a bind whose destination
    follows a symlink the replica planted in a folder bound before it could cover
    a later source's path and swap what it resolves to (the host's ``/``). A
    descriptor is the folder moorage checked, whatever is mounted later."""
    args = [config.bwrap]
    if config.as_root:
        # Privileged bwrap: no user namespace, or the drop to the sandbox uid below
        # would have no uid to drop to. The command keeps only the two capabilities
        # that drop needs, and loses them with it.
        args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
        args += ["--unshare-cgroup-try", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-all", "--unshare-user", "--disable-userns"]
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for device in gpu_devices:
        args += ["--dev-bind", str(device), f"/dev/{device.name}"]
    if gpu_devices:
        for control in GPU_CONTROL_DEVICES:
            args += ["--dev-bind-try", control, control]
    tmpfs_roots = [*config.writable_tmp, *config.hidden_dirs]
    created: set[Path] = set()

    def make_parents(path: Path) -> None:
        for parent in _ancestors_to_create(path, tmpfs_roots):
            if parent not in created:
                created.add(parent)
                args.extend(["--perms", "0755", "--dir", str(parent)])

    shm = Path("/dev/shm")
    writable_tmp = [*config.writable_tmp]
    if shm_size_mb is not None and shm not in writable_tmp:
        writable_tmp.append(shm)
    for tmp in writable_tmp:
        make_parents(tmp)
        if tmp == shm and shm_size_mb is not None:
            args += ["--size", str(shm_size_mb * 1024 * 1024)]
        args += ["--perms", "1777", "--tmpfs", str(tmp)]
    for hidden in sorted(config.hidden_dirs, key=lambda p: len(p.parts)):
        make_parents(hidden)
        args += ["--perms", "0755", "--tmpfs", str(hidden)]
    for hidden_file in config.hidden_files:
        args += ["--ro-bind", "/dev/null", str(hidden_file)]
    for exposed in config.exposed:
        make_parents(exposed)
        args += ["--ro-bind", str(exposed), str(exposed)]
    for source_fd, inside in mounts:
        make_parents(Path(inside))
        args += ["--bind-fd", str(source_fd), inside]
    make_parents(workdir)
    args += ["--bind-fd", str(workdir_fd), str(workdir)]
    # No variable of the replica's reaches bwrap's command nor setpriv, which run as
    # root when moorage is: LOADER sets them after the drop (``sandbox_env``).
    args += ["--clearenv", "--"]
    if config.as_root:
        # The process runtime sets the owner's uid on the replica's config.
        assert config.setpriv is not None
        assert config.uid is not None, "no uid to drop to"
        args += [config.setpriv, f"--reuid={config.uid}", f"--regid={config.uid}"]
        args += ["--clear-groups", "--inh-caps=-all", "--"]
    args += [config.python, "-I", "-S", "-c", LOADER, str(env_fd)]
    args += [_WRAPPER, "moorage-replica", str(workdir), config.python, _BRIDGE_SOURCE, command]
    return args


@contextlib.contextmanager
def open_mount(folder: Path) -> Iterator[int]:
    """A descriptor of ``folder`` itself for ``--bind-fd`` (``bwrap_args``), refused
    when the last part of the path is a symlink; closed on leaving."""
    descriptor = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        yield descriptor
    finally:
        os.close(descriptor)


def prepare_workdir(config: SandboxConfig, workdir: Path) -> None:
    """The replica's one writable directory, its own (and no one else's) to write: all
    of it handed to the uid it runs as, whatever an earlier start left there (an older
    moorage ran every owner as one uid)."""
    workdir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    owned_dir(workdir, uid=config.uid)


def socket_path(replica_dir: Path) -> Path:
    """Where the replica's way in is bound: beside its record, in moorage's own folder,
    which the replica cannot see, let alone write (so it cannot swap in a symlink)."""
    path = replica_dir.resolve() / SOCKET_FILE
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SandboxUnavailable(
            f"the replica socket path {path} is longer than the {MAX_SOCKET_PATH} bytes a "
            "Unix socket allows; set MOORAGE_HOME to a shorter path"
        )
    return path


def listen(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, replacing a stale one."""
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen(bridge.BACKLOG)
    except OSError:
        listener.close()
        raise
    return listener


def spawn(
    config: SandboxConfig,
    *,
    workdir: Path,
    command: str,
    env: Mapping[str, str],
    listener: socket.socket,
    output: IO[bytes] | int,
    outer_env: Mapping[str, str],
    preexec_fn: Callable[[], None] | None = None,
    mounts: Sequence[tuple[Path, str]] = (),
    shm_size_mb: int | None = None,
    gpu_devices: Sequence[Path] = (),
) -> subprocess.Popen[bytes]:
    """Starts the sandbox in a session of its own (stopping signals the whole group; no
    ``--new-session`` inside, which would leave that group). ``outer_env`` is bwrap's
    own environment, which the replica never sees (``--clearenv``); ``env`` is the
    replica's, read by bwrap from a descriptor. Raises ValueError for a NUL in ``env``."""
    with contextlib.ExitStack() as opened:
        workdir_fd = opened.enter_context(open_mount(workdir))
        mount_fds = [(opened.enter_context(open_mount(src)), inside) for src, inside in mounts]
        env_fd = opened.enter_context(args_file(env_payload(env)))
        return subprocess.Popen(
            bwrap_args(
                config,
                workdir=workdir,
                command=command,
                env_fd=env_fd,
                workdir_fd=workdir_fd,
                mounts=mount_fds,
                shm_size_mb=shm_size_mb,
                gpu_devices=gpu_devices,
            ),
            env=dict(outer_env),
            stdin=listener.fileno(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(env_fd, workdir_fd, *(fd for fd, _ in mount_fds)),
            preexec_fn=preexec_fn,
        )


# bwrap binds the host's mounts one by one: a mount that vanishes meanwhile (a
# container engine removing a container's overlay) fails that one attempt.
VANISHED_MOUNT = "Unable to apply mount flags"
PROBE_ATTEMPTS = 3


def probe(config: SandboxConfig, scratch: Path) -> None:
    """Runs a trivial replica in the sandbox, bridge included: raises SandboxUnavailable
    with bwrap's own words when it does not work here (no user namespaces, a kernel
    or AppArmor policy that refuses them, an interpreter the sandbox cannot see). An
    attempt that met a host mount vanishing is tried again: that says nothing of the
    sandbox."""
    for attempt in range(1, PROBE_ATTEMPTS + 1):
        try:
            _probe_once(config, scratch)
            return
        except SandboxUnavailable as exc:
            if VANISHED_MOUNT not in str(exc) or attempt == PROBE_ATTEMPTS:
                raise
            time.sleep(0.2)


def _probe_once(config: SandboxConfig, scratch: Path) -> None:
    # As long a name as a replica id's, so a MOORAGE_HOME too long for replicas' socket
    # paths is found here, at start.
    replica_dir = scratch / f".sandbox-probe-{uuid.uuid4().hex[:17]}"
    workdir = replica_dir / WORK_DIR
    try:
        prepare_workdir(config, workdir)
        listener = listen(socket_path(replica_dir))
        check = "import asyncio, socket; open('probe', 'w').write('ok')"
        command = f"exec {_quote(config.python)} -I -c {_quote(check)}"
        env = replica_env(
            {}, port=1, replica_id="probe", endpoint_id="probe", workdir=workdir, path=config.path
        )
        with listener, (replica_dir / "output").open("w+b") as output:
            process = spawn(
                config,
                workdir=workdir,
                command=command,
                env=env,
                listener=listener,
                output=output,
                outer_env={},
            )
            try:
                code = process.wait(timeout=PROBE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise SandboxUnavailable(
                    f"a trivial sandboxed command did not finish in {PROBE_TIMEOUT_S:.0f} s"
                ) from None
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # whatever is left of it
                process.wait()
            output.seek(0)
            said = output.read().decode(errors="replace").strip()
        if code != 0 or not (workdir / "probe").exists():
            raise SandboxUnavailable(f"bwrap failed (exit {code}): {said[-500:] or 'no output'}")
    except OSError as exc:
        raise SandboxUnavailable(f"cannot set up a sandbox: {exc}") from exc
    finally:
        shutil.rmtree(replica_dir, ignore_errors=True)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@dataclass(frozen=True)
class Sandbox:
    """What the process runtime does with normal users' replicas: run them sandboxed
    (``config``), refuse them (``problem``), or, where the operator turned the sandbox
    off, run them like the admin's."""

    config: SandboxConfig | None = None
    problem: str | None = None
    enabled: bool = True

    @classmethod
    def off(cls) -> Sandbox:
        return cls(enabled=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Sandbox:
        if settings.sandbox == "off":
            return cls.off()
        try:
            config = build_config(settings)
            # Any uid of the owners' range does for the probe, moorage's own command in
            # a folder no replica can reach.
            uid = settings.sandbox_uid_base if config.as_root else None
            probe(replace(config, uid=uid), settings.replicas_dir)
        except SandboxUnavailable as exc:
            return cls(problem=str(exc))
        return cls(config=config)

    @property
    def refusal(self) -> str | None:
        """Why a normal user's replica cannot run on this runtime, in words that say how
        to fix it; None where it can."""
        if not self.enabled or self.config is not None:
            return None
        return (
            "this moorage runs replicas as host processes and cannot sandbox a normal "
            f"user's replica: {self.problem}. The operator can fix that and restart "
            "moorage, or use containers (MOORAGE_RUNTIME=docker with MOORAGE_DOCKER_HOST)"
        )

    def describe(self, runtime: str = "process") -> str:
        """One line for the start-up output of ``runtime`` (process, or ray: the same
        sandbox on every node)."""
        if not self.enabled:
            return (
                f"{runtime} runtime: sandbox OFF (MOORAGE_SANDBOX=off): every user's replica "
                "runs as moorage's own user and can read its files; single-tenant use only"
            )
        if self.config is None:
            return f"{runtime} runtime: normal users' endpoints are refused: {self.refusal}"
        who = (
            "each owner's replicas as a uid of their own"
            if self.config.as_root
            else "moorage's uid, user namespace"
        )
        return (
            f"{runtime} runtime: normal users' replicas run in a bubblewrap sandbox "
            f"({who}, no network, Unix-socket ingress); the admin's run unsandboxed"
        )
