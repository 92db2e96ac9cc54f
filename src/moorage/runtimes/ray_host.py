"""A replica's home on a Ray node: one detached actor per replica.

Ray places the actor by resources (the flavor's and its GPUs, ``ray.py``); on its
node the actor runs the replica exactly as the process runtime runs one on
moorage's own host (sandboxed for a normal user's, the admin's as the node's user),
reachable through a ``Forwarder`` on the node's cluster address. Next to the
replica's process group it starts a ``reaper`` that kills the group if the actor's
worker dies without stopping it, so the replica never outlives its actor.

The actor outlives the moorage process that created it (it is detached, and named
after the replica), so a restarted controller adopts it as the other runtimes adopt
their replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from moorage.runtimes import logfiles
from moorage.runtimes.base import Launch, Observed, StartError
from moorage.runtimes.forwarder import Forwarder
from moorage.runtimes.process import OUTPUT_FILE, RECORD_FILE, ProcessRuntime
from moorage.runtimes.sandbox import Sandbox


@dataclass(frozen=True)
class HostOptions:
    """How every node runs replicas: the same as the process runtime's settings."""

    replicas_dir: str
    sandbox: Sandbox
    stop_grace_s: float = 10.0
    file_max_bytes: int = 0
    log_read_max_bytes: int = 16 * 1024 * 1024
    model_cache_dir: str | None = None
    # Each replica's log is rotated past this, and folders of replicas gone longer than
    # the retention are removed, on the node (the process runtime's housekeeper's job).
    log_max_bytes: int = 10 * 1024 * 1024
    log_retention_s: float = 86_400.0
    log_check_interval_s: float = 1.0


def node_address() -> str:
    """This node's address in the cluster (what ``ray start --node-ip-address`` set)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    nodes = cast("Callable[[], list[dict[str, Any]]]", ray.nodes)
    for node in nodes():
        if node.get("NodeID") == node_id:
            return str(node["NodeManagerAddress"])
    raise StartError("the Ray node this replica was placed on is not in the cluster's list")


def _gpu_devices(gpu_ids: tuple[str, ...]) -> dict[str, Path]:
    """The device files of the GPUs Ray gave this actor, where the node has them."""
    devices = {gpu: Path(f"/dev/nvidia{gpu}") for gpu in gpu_ids if gpu.isdigit()}
    return {gpu: path for gpu, path in devices.items() if path.exists()}


class ReplicaHost:
    """The actor's class (``ray.remote`` is applied by the runtime)."""

    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.replica_id: str | None = None
        self.address: str | None = None
        self._runtime: ProcessRuntime | None = None
        self._forwarder: Forwarder | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._housekeeping: asyncio.Task[None] | None = None

    def _private_root(self) -> Path:
        """The node's replicas folder, made or tightened to 0700; refused when another
        user owns it (whoever owns it could read every tenant's logs)."""
        root = Path(self.options.replicas_dir)
        # Whatever the replica's folder and log are made with is the node user's alone,
        # as on moorage's own host (``composition.private_home``); the actor's worker
        # process is its own.
        os.umask(0o077)
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            owner = root.stat().st_uid
            if owner != os.geteuid():
                raise StartError(
                    f"{root} (MOORAGE_RAY_REPLICAS_DIR) on this Ray node belongs to uid "
                    f"{owner}, not to the user Ray runs as ({os.geteuid()}); give it to that "
                    "user or choose another folder"
                )
            root.chmod(0o700)
        except OSError as exc:
            raise StartError(f"cannot prepare {root} on this Ray node: {exc}") from exc
        return root

    def _check_privilege(self, launch: Launch) -> None:
        """The sandbox was set up on moorage's host; this node must run Ray as the same
        kind of user, or a replica meant to drop to its owner's uid could run as root."""
        config = self.options.sandbox.config
        if not launch.sandboxed or config is None:
            return
        as_root = os.geteuid() == 0
        if config.as_root != as_root:
            raise StartError(
                "this Ray node runs Ray as "
                + ("root" if as_root else "a normal user")
                + ", moorage's host as "
                + ("root" if config.as_root else "a normal user")
                + ": the sandbox would not drop to the replica owner's uid; run Ray on every "
                "node as the same kind of user as moorage"
            )

    def _process_runtime(self, owner_uid: int | None, gpus: tuple[str, ...]) -> ProcessRuntime:
        root = self._private_root()
        cache = self.options.model_cache_dir
        return ProcessRuntime(
            root,
            stop_grace_s=self.options.stop_grace_s,
            file_max_bytes=self.options.file_max_bytes,
            log_read_max_bytes=self.options.log_read_max_bytes,
            sandbox=self.options.sandbox,
            model_cache_root=Path(cache) if cache else None,
            owner_uids=(lambda _user: owner_uid) if owner_uid is not None else None,
            gpu_devices=_gpu_devices(gpus),
        )

    async def start(self, launch: Launch, owner_uid: int | None) -> str:
        """Starts the replica (again, if it ran before) and answers ``node_ip:port``."""
        import ray

        gpus = tuple(str(gpu) for gpu in ray.get_gpu_ids())
        self._check_privilege(launch)
        await self._stop_replica()
        self.replica_id = launch.replica_id
        self._runtime = self._process_runtime(owner_uid, gpus)
        target = await self._runtime.start(replace(launch, gpus=gpus))
        host = node_address()
        self._forwarder = Forwarder(target)
        port = await self._forwarder.listen(host)
        self._watch(launch.replica_id)
        self._housekeeping = asyncio.create_task(self._keep_house(launch.replica_id))
        self.address = f"{host}:{port}"
        return self.address

    async def _keep_house(self, replica_id: str) -> None:
        """Rotates this replica's log past its cap, and now and then removes the folders
        of replicas on this node that stopped longer ago than the retention."""
        root = Path(self.options.replicas_dir)
        log = root / replica_id / OUTPUT_FILE
        next_sweep = 0.0
        while True:
            await asyncio.to_thread(logfiles.rotate_if_over, log, self.options.log_max_bytes)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + min(self.options.log_retention_s / 2, 60.0)
                await asyncio.to_thread(
                    logfiles.remove_stale, root, self.options.log_retention_s, record=RECORD_FILE
                )
            await asyncio.sleep(self.options.log_check_interval_s)

    def _watch(self, replica_id: str) -> None:
        """Starts the reaper beside the replica's process group (see module docs)."""
        assert self._runtime is not None
        leader = self._runtime.session_leader(replica_id)
        if leader is None:
            return  # it already ended; observe() says so
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "moorage.runtimes.reaper", str(leader)],
            env={**os.environ, "MOORAGE_REAPER_PARENT": str(os.getpid())},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    async def observe(self) -> Observed | None:
        if self._runtime is None or self.replica_id is None:
            return None
        seen = (await self._runtime.observe()).get(self.replica_id)
        if seen is None:
            return None
        address = self.address if seen.running else seen.address and self.address
        return replace(seen, address=address, labels=self.labels())

    def labels(self) -> Mapping[str, str]:
        import ray

        return {"ray_node_id": ray.get_runtime_context().get_node_id()}

    async def stop(self) -> None:
        await self._stop_replica()

    async def _stop_replica(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None
        if self._reaper is not None:
            if self._reaper.poll() is None:
                self._reaper.send_signal(signal.SIGTERM)
            self._reaper.wait()
            self._reaper = None
        if self._forwarder is not None:
            await self._forwarder.close()
            self._forwarder = None
        if self._runtime is not None and self.replica_id is not None:
            await self._runtime.stop(self.replica_id)
        self.address = None

    async def logs(self, tail: int | None, follow: bool) -> AsyncIterator[bytes]:
        """The replica's output, streamed back to the caller chunk by chunk."""
        if self._runtime is None or self.replica_id is None:
            return
        async for chunk in self._runtime.logs(self.replica_id, tail=tail, follow=follow):
            yield chunk

    def ping(self) -> str:
        return self.replica_id or ""
