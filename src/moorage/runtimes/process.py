"""The ``process`` runtime: each replica is ``sh -c COMMAND`` in its own directory.

The app must listen on ``$PORT``, a port this runtime picks per replica
(``deploy_metadata.port`` names the port inside a container and has no meaning
here). Each replica runs in its own session, so stopping it signals the whole
process group: ``sh``, ``pip``, ``python`` and whatever they forked.

A normal user's replica runs hostile code, so it runs in a sandbox (``sandbox``)
with no network of its own to the host: it is reached through a Unix socket
moorage binds and the sandbox's bridge accepts on, and its address is
``unix:/path/replica.sock``. The admin's replicas are trusted and run as
moorage's own user on ``127.0.0.1:$PORT``, without a bridge hop.

What a restarted moorage needs to adopt a replica lives on disk, in
``$MOORAGE_HOME/replicas/<replica_id>/replica.json``; the process's kernel
start time is recorded beside its pid so a recycled pid is never mistaken for
the replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from moorage.models.endpoints import DeploySpec
from moorage.models.sandbox_uids import UidsExhausted
from moorage.runtimes import logfiles, model_cache, volumes
from moorage.runtimes import sandbox as sandboxes
from moorage.runtimes.base import Launch, Observed, StartError
from moorage.runtimes.listening import Listening, group_pids, ports_of
from moorage.runtimes.ports import free_port
from moorage.runtimes.sandbox import Sandbox, SandboxConfig, SandboxUnavailable

RECORD_FILE = "replica.json"
LAUNCH_TOKEN_VARIABLE = "MOORAGE_LAUNCH_TOKEN"
OUTPUT_FILE = "output.log"
_TAIL_BYTES = 4096


@dataclass(frozen=True)
class _Record:
    replica_id: str
    endpoint_id: str
    revision: int
    port: int
    # Written before the process exists, so a crash right after spawning it cannot
    # leave an unrecorded process: the launch token in its environment finds it.
    launch_token: str
    pid: int | None = None
    start_ticks: int | None = None
    # "unix:/...": a sandboxed replica's way in; None: 127.0.0.1:port.
    address: str | None = None
    # Where this attempt's output begins in output.log: a failure quotes this attempt's
    # last lines, not those of every earlier attempt of the same replica.
    output_offset: int = 0

    @property
    def reach(self) -> str:
        return self.address or f"127.0.0.1:{self.port}"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """The process's state letter and start time (clock ticks since boot), or None
    once it is gone. An exited process nobody has reaped yet is state "Z"."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after it are plain.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def _start_ticks(pid: int) -> int | None:
    """The start time that, with the pid, names this process and no later one."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs. Exited members nobody has reaped
    yet (zombies, common when moorage is PID 1 of a container) do not count."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _tail(path: Path, lines: int = 5, since: int = 0) -> str | None:
    """The last lines written from byte ``since`` on (from the start if the file was
    rotated since, and so is shorter)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            start = since if since <= size else 0
            handle.seek(max(start, size - _TAIL_BYTES))
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) or None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def replica_environment(launch: Launch, port: int) -> dict[str, str]:
    """The host's environment minus moorage's own settings (the admin token among
    them), plus what the replica needs to know."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
    env.update(launch.deploy.env)
    env.update(launch.secrets)
    env.update(
        PORT=str(port),
        MOORAGE_REPLICA_ID=launch.replica_id,
        MOORAGE_ENDPOINT_ID=launch.endpoint_id,
        PYTHONUNBUFFERED="1",
    )
    env.update(gpu_environment(launch.gpus))
    return env


def gpu_environment(gpus: Sequence[str]) -> dict[str, str]:
    """The GPUs a replica was given, by UUID, as CUDA and the NVIDIA tools read them;
    set over the endpoint's env, so a replica cannot name GPUs it was not given."""
    if not gpus:
        return {}
    visible = ",".join(gpus)
    return {"CUDA_VISIBLE_DEVICES": visible, "NVIDIA_VISIBLE_DEVICES": visible}


def _check_gpus(launch: Launch) -> None:
    """GPUs go by UUID to replicas of flavors with a GPU inventory (docs/gpus.md): in
    ``CUDA_VISIBLE_DEVICES`` and, in the sandbox, as their device files alone."""
    if not launch.gpus:
        raise StartError(
            f"deploy_metadata.gpu_num is {launch.deploy.gpu_num}, but this flavor has no GPU "
            "inventory, so the process runtime cannot say which GPUs are the replica's; "
            "use a flavor NVML found or whose GPUs the flavors file declares (docs/gpus.md), "
            "or gpu_num 0"
        )


def refusal(sandbox: Sandbox, deploy: DeploySpec, *, trusted: bool) -> tuple[str, str] | None:
    """Why a replica of ``deploy`` cannot run as a host process under ``sandbox`` (the
    process runtime's, and each Ray node's), as (field, what to do instead); None
    where it can."""
    if deploy.command is None:
        return (
            "deploy_metadata.command",
            "is required on this server: the process runtime runs a command on the "
            "host, not an image's entrypoint; give the command that starts the app on "
            "$PORT, or run moorage with a container runtime (MOORAGE_RUNTIME=docker)",
        )
    if not deploy.volumes:
        return None
    if trusted or not sandbox.enabled:
        return (
            "deploy_metadata.volumes",
            "cannot be mounted here: this endpoint's replicas run unsandboxed on the "
            "process runtime (the admin's endpoints, or MOORAGE_SANDBOX=off), where "
            "nothing is mounted; let the command use a host folder, or use the docker "
            "runtime",
        )
    config = sandbox.config
    for volume in deploy.volumes:
        if config is not None and not sandboxes.mountable(config, volume.mount_path):
            return (
                "deploy_metadata.volumes",
                f"mount_path {volume.mount_path[:64]!r} cannot be made in the sandbox, "
                "whose root is this host's, read-only, and which keeps the replica's "
                "work folder under MOORAGE_HOME: use a folder this host has, or one "
                "under /mnt or /srv (such as /mnt/weights)",
            )
    return None


class ProcessRuntime:
    name = "process"

    def __init__(
        self,
        root: Path,
        *,
        stop_grace_s: float = 10.0,
        file_max_bytes: int = 0,
        log_read_max_bytes: int = 16 * 1024 * 1024,
        sandbox: Sandbox | None = None,
        volumes_root: Path | None = None,
        model_cache_root: Path | None = None,
        owner_uids: Callable[[str], int] | None = None,
        gpu_devices: Mapping[str, Path] | None = None,
    ) -> None:
        self.root = root
        # Each GPU's device file by UUID (``inventory/discovery.py``): a sandboxed
        # replica gets its own GPUs' files, and no other GPU's.
        self.gpu_devices = dict(gpu_devices or {})
        # As root: the uid of a replica's owner, recorded in the store on first ask
        # (``store/sandbox_uids.py``; blocking, raises UidsExhausted). Without it, as
        # root, sandboxed replicas are refused: they never share a uid.
        self.owner_uids = owner_uids
        # A folder per user mounted in their replicas (``model_cache.py``); None: none.
        self.model_cache_root = model_cache_root
        # Users' named volumes (``volumes.py``), beside the replicas' folders by default.
        self.volumes_root = volumes_root or root.parent / "volumes"
        # Without one, normal users' replicas are refused, never run unsandboxed.
        self.sandbox = sandbox or Sandbox(problem="this runtime was started without a sandbox")
        self.stop_grace_s = stop_grace_s
        # The backstop against a log flood between two rotation checks (logfiles.py).
        self.file_max_bytes = file_max_bytes
        self.log_read_max_bytes = log_read_max_bytes
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        root.mkdir(parents=True, exist_ok=True)

    def _dir(self, replica_id: str) -> Path:
        return self.root / replica_id

    async def start(self, launch: Launch) -> str:
        if launch.deploy.gpu_num > 0:
            _check_gpus(launch)
        problem = self.refusal(launch.deploy, trusted=not launch.sandboxed)
        if problem is not None:
            raise StartError(": ".join(problem))
        command = launch.deploy.command
        assert command is not None  # refusal() says so otherwise
        config = self._sandbox_for(launch)
        if config is not None and config.as_root:
            config = replace(config, uid=await self._owner_uid(launch))
        await self.stop(launch.replica_id)  # never two processes for one replica
        workdir = self._dir(launch.replica_id)
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        record = _Record(
            launch.replica_id,
            launch.endpoint_id,
            launch.revision,
            port,
            uuid.uuid4().hex,
            output_offset=_size(workdir / OUTPUT_FILE),
        )
        if config is not None:
            return self._start_sandboxed(launch, record, config, command)
        self._write_record(record)
        env = replica_environment(launch, port)
        if self.model_cache_root is not None and launch.user_id:
            # Unsandboxed (the admin's): no mount namespace, the folder itself.
            try:
                cache = model_cache.prepare(self.model_cache_root, launch.user_id, uid=None)
            except OSError as exc:
                raise StartError(f"cannot prepare the model cache: {exc}") from exc
            for name, value in model_cache.environment(str(cache)).items():
                if name not in launch.deploy.env:
                    env[name] = value
        env[LAUNCH_TOKEN_VARIABLE] = record.launch_token
        with (workdir / OUTPUT_FILE).open("ab") as output:
            try:
                # Spawned without awaiting, so no other task runs between the spawn and
                # the record naming its pid: a fork+exec takes well under a millisecond.
                process = subprocess.Popen(  # noqa: ASYNC220
                    ["/bin/sh", "-c", command],
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=logfiles.limit_file_size(self.file_max_bytes),
                )
            except ValueError as exc:  # a NUL byte in env: what an old store may hold
                (workdir / RECORD_FILE).unlink(missing_ok=True)
                raise StartError(f"deploy_metadata.env cannot be passed on: {exc}") from exc
            except OSError as exc:
                (workdir / RECORD_FILE).unlink(missing_ok=True)
                raise StartError(f"cannot run /bin/sh for the command: {exc}") from exc
        self._children[launch.replica_id] = process
        self._write_record(replace(record, pid=process.pid, start_ticks=_start_ticks(process.pid)))
        return f"127.0.0.1:{port}"

    def refusal(self, deploy: DeploySpec, *, trusted: bool) -> tuple[str, str] | None:
        """Why this runtime cannot run ``deploy``, as (field, what to do instead); None
        where it can. The API asks at create, PUT and start, so the user hears it at
        once; ``start`` asks again for what an older moorage stored."""
        return refusal(self.sandbox, deploy, trusted=trusted)

    def _sandbox_for(self, launch: Launch) -> SandboxConfig | None:
        """The sandbox the replica runs in; None to run it as moorage's user (the
        admin's, or anyone's where the operator turned the sandbox off)."""
        if not launch.sandboxed or not self.sandbox.enabled:
            return None
        if self.sandbox.config is None:
            raise StartError(self.sandbox.refusal or "no sandbox")
        return self.sandbox.config

    async def _owner_uid(self, launch: Launch) -> int:
        """The uid (and gid) the replica drops to: its owner's own, which no other
        owner's replica has (``models/sandbox_uids.py``)."""
        if not launch.user_id:
            raise StartError("this replica has no owner, whose uid it would run as")
        if self.owner_uids is None:
            raise StartError("this runtime was started without a record of owners' uids")
        try:
            return await asyncio.to_thread(self.owner_uids, launch.user_id)
        except UidsExhausted as exc:
            raise StartError(str(exc)) from exc

    def _start_sandboxed(
        self, launch: Launch, record: _Record, config: SandboxConfig, command: str
    ) -> str:
        """Binds the replica's socket, then spawns the sandbox with the listener as its
        stdin. Synchronous from the record to the spawn, like the unsandboxed path."""
        replica_dir = self._dir(launch.replica_id)
        workdir = replica_dir / sandboxes.WORK_DIR
        if launch.deploy.volumes and not launch.user_id:
            raise StartError("deploy_metadata.volumes: this replica has no owner to keep them")
        try:
            mounts = [
                (
                    volumes.prepare_host_dir(self.volumes_root, launch.user_id, v, uid=config.uid),
                    v.mount_path,
                )
                for v in launch.deploy.volumes
            ]
            cache_env: dict[str, str] = {}
            # A host without /mnt has no place for the mount point: no cache there.
            if (
                self.model_cache_root is not None
                and launch.user_id
                and sandboxes.mountable(config, model_cache.MOUNT_PATH)
            ):
                cache = model_cache.prepare(self.model_cache_root, launch.user_id, uid=config.uid)
                mounts.append((cache, model_cache.MOUNT_PATH))
                cache_env = model_cache.environment(model_cache.MOUNT_PATH)
            sandboxes.prepare_workdir(config, workdir)
            listener = sandboxes.listen(sandboxes.socket_path(replica_dir))
        except (SandboxUnavailable, OSError) as exc:
            raise StartError(f"cannot prepare the replica's sandbox: {exc}") from exc
        record = replace(record, address=f"unix:{sandboxes.socket_path(replica_dir)}")
        self._write_record(record)
        env = sandboxes.replica_env(
            # via an in-memory file read after the uid drop; the cache's are defaults
            {**cache_env, **launch.deploy.env, **launch.secrets, **gpu_environment(launch.gpus)},
            port=record.port,
            replica_id=launch.replica_id,
            endpoint_id=launch.endpoint_id,
            workdir=workdir,
            path=config.path,
        )
        with listener, (replica_dir / OUTPUT_FILE).open("ab") as output:
            try:
                process = sandboxes.spawn(
                    config,
                    workdir=workdir,
                    command=command,
                    env=env,
                    listener=listener,
                    output=output,
                    # bwrap's own environment, which the replica never sees: the launch
                    # token finds the sandbox's session leader if moorage dies right here.
                    outer_env={LAUNCH_TOKEN_VARIABLE: record.launch_token},
                    preexec_fn=logfiles.limit_file_size(self.file_max_bytes),
                    mounts=mounts,
                    shm_size_mb=launch.deploy.shm_size_mb,
                    gpu_devices=[self.gpu_devices[u] for u in launch.gpus if u in self.gpu_devices],
                )
            except ValueError as exc:  # a NUL byte in env: what an old store may hold
                (replica_dir / RECORD_FILE).unlink(missing_ok=True)
                raise StartError(f"deploy_metadata.env cannot be passed on: {exc}") from exc
            except OSError as exc:
                (replica_dir / RECORD_FILE).unlink(missing_ok=True)
                raise StartError(f"cannot run {config.bwrap} for the sandbox: {exc}") from exc
        self._children[launch.replica_id] = process
        self._write_record(replace(record, pid=process.pid, start_ticks=_start_ticks(process.pid)))
        return record.reach

    def _write_record(self, record: _Record) -> None:
        workdir = self._dir(record.replica_id)
        temporary = workdir / (RECORD_FILE + ".tmp")
        temporary.write_text(json.dumps(asdict(record)))
        temporary.replace(workdir / RECORD_FILE)

    def _read_record(self, replica_id: str) -> _Record | None:
        try:
            data = json.loads((self._dir(replica_id) / RECORD_FILE).read_text())
            record = _Record(**data)
        except (OSError, ValueError, TypeError):
            return None
        if record.pid is None:  # moorage died while launching it: find it by its token
            pid = _find_launched(record.launch_token)
            if pid is not None:
                record = replace(record, pid=pid, start_ticks=_start_ticks(pid))
                self._write_record(record)
        return record

    def _is_running(self, record: _Record) -> bool:
        if record.pid is None:
            return False
        stat = _proc_stat(record.pid)
        return stat is not None and stat[0] != "Z" and stat[1] == record.start_ticks

    async def stop(self, replica_id: str) -> None:
        record = self._read_record(replica_id)
        child = self._children.pop(replica_id, None)
        if record is not None:
            if record.pid is not None and (self._is_running(record) or _group_alive(record.pid)):
                await self._terminate_group(record.pid)
            (self._dir(replica_id) / RECORD_FILE).unlink(missing_ok=True)
        (self._dir(replica_id) / sandboxes.SOCKET_FILE).unlink(missing_ok=True)
        if child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await asyncio.to_thread(child.wait)

    async def _terminate_group(self, pgid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_grace_s
        while _group_alive(pgid) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            for _ in range(100):
                if not _group_alive(pgid):
                    break
                await asyncio.sleep(0.02)

    async def observe(self) -> Mapping[str, Observed]:
        observed: dict[str, Observed] = {}
        for record_path in self.root.glob(f"*/{RECORD_FILE}"):
            record = self._read_record(record_path.parent.name)
            if record is None:
                continue
            running = self._is_running(record)
            child = self._children.get(record.replica_id)
            exit_code = child.poll() if child is not None else None  # poll() also reaps it
            observed[record.replica_id] = Observed(
                replica_id=record.replica_id,
                endpoint_id=record.endpoint_id,
                revision=record.revision,
                address=record.reach if record.pid is not None else None,
                running=running,
                exit_code=exit_code,
                output_tail=None
                if running
                else _tail(record_path.parent / OUTPUT_FILE, since=record.output_offset),
            )
        return observed

    def session_leader(self, replica_id: str) -> int | None:
        """The pid of the replica's session leader, which is also its process group: what
        a watcher kills to stop everything the replica spawned; None once it is gone."""
        record = self._read_record(replica_id)
        if record is None or record.pid is None or not self._is_running(record):
            return None
        return record.pid

    async def listening(self, replica_id: str) -> Listening | None:
        """The TCP ports the replica's process group listens on, beside its $PORT."""
        return await asyncio.to_thread(self._listening, replica_id)

    def _listening(self, replica_id: str) -> Listening | None:
        record = self._read_record(replica_id)
        if record is None or record.pid is None or not self._is_running(record):
            return None
        ports = ports_of(group_pids(record.pid))
        return None if ports is None else Listening(record.port, ports)

    async def logs(
        self, replica_id: str, *, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        """Reads ``output.log`` (and its rotated ``output.log.1``) off the event loop:
        the tail from the end, then a follower that watches the file's size."""

        def alive() -> bool:
            record = self._read_record(replica_id)
            return record is not None and self._is_running(record)

        async def running() -> bool:
            return await asyncio.to_thread(alive)

        async for chunk in logfiles.stream(
            self._dir(replica_id) / OUTPUT_FILE,
            tail_lines=tail,
            follow=follow,
            max_bytes=self.log_read_max_bytes,
            running=running,
        ):
            yield chunk

    async def close(self) -> None:
        for child in self._children.values():
            child.poll()


def _find_launched(token: str) -> int | None:
    """The session leader carrying a launch token in its environment, if it runs."""
    needle = f"{LAUNCH_TOKEN_VARIABLE}={token}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle not in environ.read_bytes().split(b"\0"):
                continue
            pid = int(environ.parent.name)
            if os.getsid(pid) == pid:
                return pid
        except (OSError, ValueError):
            continue
    return None
