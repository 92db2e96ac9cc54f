"""The ``docker`` runtime: each replica is a container, over the Docker Engine API.

Works against Docker and against Podman's Docker-compatible socket. A replica
runs ``sh -c COMMAND`` in ``image_url`` (without a command: the image's own
entrypoint, with ``args``), with ``deploy_metadata.port`` published
on a free 127.0.0.1 port the runtime picks. Everything moorage needs after a
crash is on the container as labels (endpoint, replica, revision, host port,
and the moorage installation it belongs to), so a restarted moorage adopts its
containers and never touches another installation's.

The Docker SDK is blocking; every call runs in a worker thread (``asyncio.to_thread``),
and nothing runs in a thread of its own: image pulls (``docker_images.py``) and log
readers are asyncio work whose streams ``close()`` cuts, so none outlives shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import threading
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container
from docker.types import CancellableStream, DeviceRequest, LogConfig

from moorage.models.endpoints import DeploySpec
from moorage.runtimes import docker_logs, model_cache, volumes
from moorage.runtimes.base import Launch, Observed, StartError
from moorage.runtimes.docker_images import ImagePuller
from moorage.runtimes.image_access import ImagePullRecord
from moorage.runtimes.listening import Listening, inside_only, listeners_of
from moorage.runtimes.ports import free_port

LABEL = "io.moorage"
# Engine volumes binding users' model-cache folders: moorage-cache-<installation>-<user_id>
# (users' own volumes are moorage-<user_id>-<name>, which this never equals).
ENGINE_CACHE_PREFIX = "moorage-cache"
log = logging.getLogger(__name__)
_OUTPUT_TAIL_LINES = 5
# The user's command runs under a small shell that passes SIGTERM/SIGINT on to
# every process of the container, so `pip install x && python app.py` gets a
# polite stop too, not only a command that ends with `exec`. The command itself
# arrives as the supervisor's first argument ($1), so no quoting can break it and
# the environment holds only what the endpoint asked for. After passing the signal
# on it waits until every process has ended (the engine kills what is left at the
# end of the grace): an app orphaned when its shell died still gets its grace,
# since the container ends with the supervisor.
_SUPERVISOR = (
    "trap 'trap - TERM INT; kill -TERM -1 2>/dev/null; "
    "while kill -0 -1 2>/dev/null; do sleep 0.1; done' TERM INT; "
    '/bin/sh -c "$1" & child=$!; '
    'wait "$child"; status=$?; '
    'if [ "$status" -gt 128 ]; then wait "$child"; status=$?; fi; '
    'exit "$status"'
)


def installation_id(database_url: str) -> str:
    """Names one moorage installation: containers of others on the engine are not ours."""
    return hashlib.sha256(database_url.encode()).hexdigest()[:16]


def connect(base_url: str, timeout_s: float = 30.0) -> docker.DockerClient:
    """A client that has answered a ping; raises DockerException when the engine is absent."""
    client = docker.DockerClient(base_url=base_url, timeout=int(timeout_s))
    try:
        client.ping()
    except Exception:
        client.close()
        raise
    return client


class DockerRuntime:
    name = "docker"

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        installation: str,
        stop_grace_s: float = 10.0,
        log_max_bytes: int = 10 * 1024 * 1024,
        model_cache_root: Path | None = None,
        image_pulls: Path | None = None,
    ) -> None:
        self.client = client
        # A host folder per user bind-mounted in their containers (``model_cache.py``);
        # the engine must run on this host to see it. None: no cache.
        self.model_cache_root = model_cache_root
        self.installation = installation
        self.stop_grace_s = stop_grace_s
        self.log_max_bytes = log_max_bytes
        # Which images pulls with a user's login brought, and for whom (a JSON file in
        # MOORAGE_HOME; None: in memory).
        self._images = ImagePuller(client, ImagePullRecord(image_pulls))
        # Open log streams, closed by close() so that no reader outlives the runtime.
        self._log_streams: set[CancellableStream[tuple[int, bytes]]] = set()
        # Serializes creating an endpoint's network and attaching a container to it
        # against removing the network when its last container goes.
        self._network_lock = threading.RLock()

    def _container_name(self, replica_id: str) -> str:
        return f"moorage-{self.installation[:8]}-{replica_id}"

    # -- networks ----------------------------------------------------------------

    def network_name(self, endpoint_id: str) -> str:
        return f"moorage-{self.installation[:8]}-{endpoint_id}"

    def own_namespace_only(self) -> bool:
        """Whether each container gets a user-mode network namespace of its own
        (slirp4netns) instead of a bridge network per endpoint.

        Docker isolates bridge networks from each other by itself, and honours
        ``enable_icc=false`` (replicas of one endpoint cannot talk to each other
        either). Podman's Docker API drops that option; its networks route to each
        other unless created ``isolate`` (netavark 1.5, Podman 4.5 and later). On an
        older Podman no bridge option isolates them (``internal`` loses published
        ports), so each container gets slirp4netns: its own namespace, reachable only
        through its port published on the host's loopback, with no route to the
        host's loopback or to any other container."""
        return self._network_isolation is None

    @functools.cached_property
    def _network_isolation(self) -> dict[str, str] | None:
        """The bridge options that isolate one endpoint's network from every other's;
        None where only slirp4netns isolates (Podman before 4.5). Asked of the engine
        once (two threads asking at once both get the same answer)."""
        version = self.client.version()
        components = version.get("Components") or []
        podman = any("podman" in str(c.get("Name", "")).lower() for c in components)
        if not podman:
            return {"com.docker.network.bridge.enable_icc": "false"}
        if _version_tuple(str(version.get("Version", "0"))) < (4, 5):
            log.info(
                "Podman %s cannot isolate bridge networks: each replica gets a "
                "network namespace of its own (slirp4netns)",
                version.get("Version"),
            )
            return None
        return {"isolate": "true"}

    def _network_options(self, endpoint_id: str) -> dict[str, Any]:
        """How a container of this endpoint is networked. Call with the lock."""
        if self.own_namespace_only():
            return {"network_mode": "slirp4netns"}
        return {"network": self._ensure_network(endpoint_id)}

    def _ensure_network(self, endpoint_id: str) -> str:
        """The endpoint's own bridge network, created on first use. Call with the lock."""
        name = self.network_name(endpoint_id)
        options = self._network_isolation or {}
        try:
            self.client.networks.get(name)
        except NotFound:
            try:
                self.client.networks.create(
                    name,
                    driver="bridge",
                    options=options,
                    labels={
                        f"{LABEL}.installation": self.installation,
                        f"{LABEL}.endpoint": endpoint_id,
                    },
                )
            except APIError as exc:
                if exc.status_code != 409:  # 409: created meanwhile, which will do
                    raise
        return name

    def _drop_network_if_unused(self, endpoint_id: str) -> None:
        """Removes the endpoint's network once none of its containers is left."""
        if self.own_namespace_only():
            return
        with self._network_lock:
            left = self.client.containers.list(
                all=True,
                ignore_removed=True,
                filters={
                    "label": [
                        f"{LABEL}.installation={self.installation}",
                        f"{LABEL}.endpoint={endpoint_id}",
                    ]
                },
            )
            if left:
                return
            with contextlib.suppress(NotFound, APIError):
                self.client.networks.get(self.network_name(endpoint_id)).remove()

    def _find(self, replica_id: str) -> Container | None:
        """This installation's container for a replica; never another installation's."""
        found = self.client.containers.list(
            all=True,
            ignore_removed=True,
            filters={
                "label": [
                    f"{LABEL}.installation={self.installation}",
                    f"{LABEL}.replica={replica_id}",
                ]
            },
        )
        return found[0] if found else None

    # -- replicas --------------------------------------------------------------

    async def start(self, launch: Launch) -> str:
        image_id = await self._images.ensure(
            launch.deploy.image_url, auth=launch.registry_auth, owner=launch.user_id
        )
        await self.stop(launch.replica_id)  # never two containers for one replica
        host_port = free_port()
        try:
            await asyncio.to_thread(self._run, launch, host_port, image_id)
        except StartError:
            await self.stop(launch.replica_id)
            raise
        except DockerException as exc:
            with contextlib.suppress(DockerException):
                await self.stop(launch.replica_id)
            raise StartError(self._start_failure(launch, exc)) from exc
        return f"127.0.0.1:{host_port}"

    def _start_failure(self, launch: Launch, exc: DockerException) -> str:
        explanation = _explain(exc)
        mentions_gpu = any(word in explanation.lower() for word in ("gpu", "device", "nvidia"))
        if launch.deploy.gpu_num and mentions_gpu:
            return (
                f"the container engine cannot give this replica {launch.deploy.gpu_num} GPU(s): "
                f"{explanation}; install the NVIDIA container toolkit on the host, or use "
                "gpu_num 0"
            )
        return f"the container engine could not start the replica: {explanation}"

    def _run(self, launch: Launch, host_port: int, image_id: str) -> None:
        """Creates and starts the container from ``image_id``, the image its owner
        was allowed (not ``image_url``, whose tag another pull may have moved since)."""
        deploy = launch.deploy
        environment = {
            "PYTHONUNBUFFERED": "1",  # a default the endpoint's env may change
            **(model_cache.environment(model_cache.MOUNT_PATH) if self.model_cache_root else {}),
            **deploy.env,
            **launch.secrets,  # passed through the engine API, never on a command line
            "PORT": str(deploy.port),
            "MOORAGE_REPLICA_ID": launch.replica_id,
            "MOORAGE_ENDPOINT_ID": launch.endpoint_id,
        }
        labels = {
            f"{LABEL}.installation": self.installation,
            f"{LABEL}.endpoint": launch.endpoint_id,
            f"{LABEL}.replica": launch.replica_id,
            f"{LABEL}.revision": str(launch.revision),
            f"{LABEL}.host-port": str(host_port),
        }
        options: dict[str, Any] = {}
        if deploy.resources.cpus is not None:
            options["nano_cpus"] = int(deploy.resources.cpus * 1e9)
        if deploy.resources.memory_mb is not None:
            options["mem_limit"] = f"{deploy.resources.memory_mb}m"
        if launch.gpus:  # the GPUs this replica was given, and no other
            options["device_requests"] = [
                DeviceRequest(device_ids=list(launch.gpus), capabilities=[["gpu"]])
            ]
        elif deploy.gpu_num:  # a flavor with no GPU inventory: any gpu_num GPUs
            options["device_requests"] = [
                DeviceRequest(count=deploy.gpu_num, capabilities=[["gpu"]])
            ]
        if deploy.shm_size_mb is not None:
            options["shm_size"] = f"{deploy.shm_size_mb}m"
        if deploy.volumes:
            options["volumes"] = self._volumes(launch)
        if self.model_cache_root is not None and launch.user_id:
            try:
                cache = model_cache.prepare(self.model_cache_root, launch.user_id, uid=None)
            except OSError as exc:
                raise StartError(f"cannot prepare the model cache: {exc}") from exc
            options.setdefault("volumes", {})[self._cache_volume(launch.user_id, cache)] = {
                "bind": model_cache.MOUNT_PATH,
                "mode": "rw",
            }
        with self._network_lock:
            try:
                network = self._network_options(launch.endpoint_id)
                container = self.client.containers.create(
                    image_id,
                    **_entrypoint(deploy),
                    name=self._container_name(launch.replica_id),
                    labels=labels,
                    environment=environment,
                    ports={f"{deploy.port}/tcp": ("127.0.0.1", host_port)},
                    **network,
                    # The engine's default log driver, capped: Docker keeps this file and
                    # one more; Podman (k8s-file) honours max-size alone, truncating.
                    log_config=LogConfig(
                        type="", config={"max-size": str(self.log_max_bytes), "max-file": "2"}
                    ),
                    init=True,  # a real PID 1 that reaps orphans and passes signals on
                    **options,
                )
            except DockerException:
                self._drop_network_if_unused(launch.endpoint_id)  # not left behind
                raise
        if deploy.gpu_num and not container.attrs.get("HostConfig", {}).get("DeviceRequests"):
            # Podman's Docker API accepts device requests and drops them silently.
            raise StartError(
                f"deploy_metadata.gpu_num is {deploy.gpu_num}, but this container engine "
                "ignores GPU requests; use Docker with the NVIDIA container toolkit, or gpu_num 0"
            )
        container.start()

    def _volumes(self, launch: Launch) -> dict[str, dict[str, str]]:
        """The user's engine volumes, created (labelled with the user) on first use."""
        if not launch.user_id:
            raise StartError("deploy_metadata.volumes: this replica has no owner to keep them")
        mounts: dict[str, dict[str, str]] = {}
        for volume in launch.deploy.volumes:
            name = volumes.engine_name(launch.user_id, volume)
            try:
                self.client.volumes.get(name)
            except NotFound:
                with contextlib.suppress(APIError):  # created meanwhile, which will do
                    self.client.volumes.create(
                        name,
                        labels={
                            f"{LABEL}.installation": self.installation,
                            volumes.LABEL_USER: launch.user_id,
                            volumes.LABEL_VOLUME: volume.name,
                        },
                    )
            mounts[name] = {"bind": volume.mount_path, "mode": "rw"}
        return mounts

    def _cache_volume(self, user_id: str, cache: Path) -> str:
        """An engine volume binding the user's model-cache folder ``nosuid,nodev``: what
        a replica (root in its container) writes there stays on the host, and a
        set-user-id file or a device node it makes must never work there. A plain bind
        mount cannot say so; the local driver's ``o`` can. Made again when the folder
        it binds moved (``MOORAGE_MODEL_CACHE`` changed)."""
        name = f"{ENGINE_CACHE_PREFIX}-{self.installation}-{user_id}"
        wanted = {"type": "none", "device": str(cache), "o": "bind,nosuid,nodev"}
        try:
            existing = self.client.volumes.get(name)
            if (existing.attrs.get("Options") or {}).get("device") == str(cache):
                return name
            existing.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            raise StartError(f"cannot prepare the model cache's volume {name}: {exc}") from exc
        with contextlib.suppress(APIError):  # created meanwhile, which will do
            self.client.volumes.create(
                name,
                driver="local",
                driver_opts=wanted,
                labels={f"{LABEL}.installation": self.installation, volumes.LABEL_USER: user_id},
            )
        return name

    async def stop(self, replica_id: str) -> None:
        await asyncio.to_thread(self._stop, replica_id)

    def _stop(self, replica_id: str) -> None:
        container = self._find(replica_id)
        if container is None:
            return
        with contextlib.suppress(NotFound):
            if container.status == "running":
                container.stop(timeout=max(1, int(self.stop_grace_s)))
            container.remove(force=True)
        endpoint_id = container.labels.get(f"{LABEL}.endpoint")
        if endpoint_id:
            self._drop_network_if_unused(endpoint_id)

    async def observe(self) -> Mapping[str, Observed]:
        return await asyncio.to_thread(self._observe)

    async def listening(self, replica_id: str) -> Listening | None:
        """The TCP ports the container listens on, read from its init process's
        ``/proc/<pid>/net/tcp`` (the engine's ``State.Pid``): the container has a
        network namespace of its own, so a port it listens on at 127.0.0.1 alone is
        out of reach of the probe and the gateway (``inside_only``). None where this
        host's /proc cannot show it (a remote engine, or a rootless one's pid out of
        reach)."""
        return await asyncio.to_thread(self._listening, replica_id)

    def _listening(self, replica_id: str) -> Listening | None:
        container = self._find(replica_id)
        if container is None or container.status != "running":
            return None
        pid = container.attrs.get("State", {}).get("Pid")
        given = _port_variable(container.attrs.get("Config", {}).get("Env") or [])
        if not isinstance(pid, int) or pid <= 0 or given is None:
            return None
        listeners = listeners_of([pid])
        if listeners is None:
            return None
        ports = tuple(sorted({port for _, port in listeners}))
        return Listening(given, ports, inside_only(listeners))

    def _mine(self) -> list[Container]:
        return list(
            self.client.containers.list(
                all=True,
                ignore_removed=True,
                filters={"label": f"{LABEL}.installation={self.installation}"},
            )
        )

    def _observe(self) -> dict[str, Observed]:
        observed: dict[str, Observed] = {}
        for container in self._mine():
            labels = container.labels
            running = container.status == "running"
            state = container.attrs.get("State", {})
            tail = None
            if not running:
                with contextlib.suppress(DockerException):
                    tail = container.logs(tail=_OUTPUT_TAIL_LINES).decode(errors="replace")
            replica_id = labels[f"{LABEL}.replica"]
            observed[replica_id] = Observed(
                replica_id=replica_id,
                endpoint_id=labels[f"{LABEL}.endpoint"],
                revision=int(labels[f"{LABEL}.revision"]),
                address=f"127.0.0.1:{labels[f'{LABEL}.host-port']}",
                running=running,
                exit_code=None if running else state.get("ExitCode"),
                output_tail=(tail or "").strip() or None,
                labels=dict(labels),
            )
        return observed

    async def logs(
        self, replica_id: str, *, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        """Whole lines, stdout's and stderr's each joined on its own, the tail counted
        over them (``docker_logs``)."""
        container = await asyncio.to_thread(self._find, replica_id)
        if container is None or container.id is None or (tail == 0 and not follow):
            return
        container_id = container.id
        # A thread of its own per reader: a follower blocks its thread for as long as
        # it follows, and many of them in the loop's default executor (a few threads)
        # would stall every other worker-thread call, the controller's included.
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moorage-docker-logs")
        loop = asyncio.get_running_loop()
        assembler = docker_logs.LineAssembler()
        streams: list[CancellableStream[tuple[int, bytes]]] = []

        def open_frames(tail_of: int | str, following: bool) -> bool:
            stream = docker_logs.open_frames(
                self.client, container_id, tail=tail_of, follow=following
            )
            if stream is not None:
                streams.append(stream)
                self._log_streams.add(stream)
            return stream is not None

        def read_to_the_end() -> tuple[list[bytes], int] | None:
            if not open_frames("all", False):
                return None
            return docker_logs.backlog(streams[-1], tail, assembler, ended=not follow)

        try:
            skip = 0
            if not follow or (tail is not None and tail > 0):
                read = await loop.run_in_executor(reader, read_to_the_end)
                if read is None:
                    return
                lines, skip = read
                for line in lines:
                    yield line
                if not follow:
                    return
            # A consumer that goes away (or close()) closes the stream's socket, which
            # ends a read blocked on it.
            if not await loop.run_in_executor(reader, open_frames, 0 if tail == 0 else "all", True):
                return
            follower = streams[-1]
            while (frame := await loop.run_in_executor(reader, next, follower, None)) is not None:
                if skip > 0:  # already read, and its lines given
                    skip -= 1
                    continue
                for line in assembler.feed(*frame):
                    yield line
            for line in assembler.flush():
                yield line
        finally:
            for stream in streams:
                self._log_streams.discard(stream)
                with contextlib.suppress(Exception):
                    stream.close()
            reader.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Ends every pull and log reader, then closes the engine client."""
        for stream in list(self._log_streams):
            with contextlib.suppress(Exception):
                stream.close()
        await self._images.close()
        await asyncio.to_thread(self.client.close)


def _entrypoint(deploy: DeploySpec) -> dict[str, Any]:
    """With a command, the supervisor shell runs it; without, the image runs as built:
    its own ENTRYPOINT, with ``args`` in place of its CMD (none: the image's CMD). The
    engine's stop still sends SIGTERM, to the entrypoint, through the init process."""
    if deploy.command is not None:
        return {
            "entrypoint": ["/bin/sh", "-c"],
            "command": [_SUPERVISOR, "moorage-replica", deploy.command],
        }
    return {"command": list(deploy.args)} if deploy.args else {}


def _version_tuple(version: str) -> tuple[int, ...]:
    """``4.3.1`` as (4, 3, 1); what is not a number counts as 0."""
    parts = []
    for part in version.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _explain(exc: DockerException) -> str:
    if isinstance(exc, APIError):
        return str(exc.explanation or exc)
    return str(exc)


def _port_variable(env: list[str]) -> int | None:
    """The ``PORT`` moorage gave the container, from its ``Config.Env``."""
    for item in env:
        name, _, value = item.partition("=")
        if name == "PORT" and value.isdigit():
            return int(value)
    return None
