"""The ``ray`` runtime: replicas on a Ray cluster, one detached actor each.

Ray places each replica's actor (``ray_host.py``) on a node that has the flavor's
resource and the replica's GPUs free: a flavor is the custom resource
``moorage-flavor-<cluster_flavor_id>``, one unit per replica slot or per GPU, which
operators give each node on ``ray start --resources`` (docs/deploy.md). Moorage
keeps no node agents of its own: what runs where, and which node died, is Ray's.

Actors are named after their replica in this installation's namespace and outlive
the moorage process that made them, so a restarted controller finds and adopts
them; ``observe`` asks each actor about its replica, and an actor whose node died
answers with Ray's ``ActorDiedError``, which reports the replica as gone with the
reason, so the controller replaces it elsewhere.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, cast

from moorage.models.endpoints import DeploySpec
from moorage.models.sandbox_uids import UidsExhausted
from moorage.runtimes import process
from moorage.runtimes.base import Launch, Observed, StartError, StartPending
from moorage.runtimes.ray_host import HostOptions, ReplicaHost
from moorage.runtimes.sandbox import Sandbox

log = logging.getLogger(__name__)

ACTOR_PREFIX = "replica-"
FLAVOR_RESOURCE_PREFIX = "moorage-flavor-"
# How long ``start`` waits for Ray to place the actor and the replica to spawn before
# telling the controller to come back (StartPending): a pass never waits on capacity.
START_WAIT_S = 5.0
# How long one actor may take to answer ``observe``; past it, its last answer stands
# (a busy node is not a dead one: Ray says when a node died).
OBSERVE_TIMEOUT_S = 5.0


class RayUnavailable(Exception):
    """No Ray cluster answers at the configured address."""


def flavor_resource(flavor_key: str) -> str:
    """The custom resource a node offers for a flavor (``ray start --resources``)."""
    return FLAVOR_RESOURCE_PREFIX + flavor_key


def actor_resources(launch: Launch) -> dict[str, float]:
    """What one replica takes of its node: one flavor unit per GPU, or one slot."""
    units = max(launch.deploy.gpu_num, 1)
    return {flavor_resource(launch.flavor_key): float(units)} if launch.flavor_key else {}


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fails fast, and in words, when nothing listens at the cluster's address:
    ``ray.init`` would otherwise retry for a minute and then raise its own riddle."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise RayUnavailable(
            f"MOORAGE_RAY_ADDRESS {address!r} is not HOST:PORT (the head's GCS address, "
            "which `ray start --head --port=PORT` prints)"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise RayUnavailable(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
            "`ray start --head --port=6379` (docs/deploy.md) or fix MOORAGE_RAY_ADDRESS"
        ) from exc


def _cause(exc: BaseException) -> BaseException:
    """The exception an actor method raised, out of Ray's wrapper."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


class RayRuntime:
    name = "ray"

    def __init__(
        self,
        address: str,
        namespace: str,
        options: HostOptions,
        *,
        owner_uids: Callable[[str], int] | None = None,
        node_ip: str | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        _check_reachable(address, connect_timeout_s)
        try:
            import ray
        except ImportError as exc:
            raise RayUnavailable(
                f"the ray runtime needs Ray installed beside moorage ({exc}); "
                "pip install 'moorage[ray]'"
            ) from exc

        self.address = address
        self.namespace = namespace
        self.options = options
        self.owner_uids = owner_uids
        if not ray.is_initialized():
            ray.init(
                address=address,
                namespace=namespace,
                log_to_driver=False,
                configure_logging=False,
                include_dashboard=False,
                # This host's address in the cluster, where Ray cannot tell it: moorage
                # connects through the Ray node on its own host (docs/deploy.md).
                _node_ip_address=node_ip,
            )
        self._ray = ray
        self._actor_class: Any = ray.remote(ReplicaHost)
        self._hosts: dict[str, Any] = {}
        self._starts: dict[str, concurrent.futures.Future[Any]] = {}
        self._last: dict[str, Observed] = {}

    @property
    def sandbox(self) -> Sandbox:
        return self.options.sandbox

    def refusal(self, deploy: DeploySpec, *, trusted: bool) -> tuple[str, str] | None:
        """As the process runtime's: each node runs the replica as a host process."""
        return process.refusal(self.sandbox, deploy, trusted=trusted)

    # -- starting -------------------------------------------------------------------

    async def start(self, launch: Launch) -> str:
        future = self._starts.get(launch.replica_id)
        if future is None:
            host = await self._host_for(launch)
            uid = await self._owner_uid(launch)
            future = host.start.remote(launch, uid).future()
            self._starts[launch.replica_id] = future
        done, _ = await asyncio.wait({asyncio.wrap_future(future)}, timeout=START_WAIT_S)
        if not done:
            raise StartPending(await asyncio.to_thread(self._waiting_for, launch))
        del self._starts[launch.replica_id]
        try:
            return str(future.result())
        except self._ray.exceptions.RayActorError as exc:
            self._hosts.pop(launch.replica_id, None)
            raise StartError(f"its Ray actor ended before the replica started: {exc}") from exc
        except self._ray.exceptions.RayTaskError as exc:
            cause = _cause(exc)
            if isinstance(cause, StartError):
                raise StartError(str(cause)) from None
            raise StartError(f"the replica's Ray actor could not start it: {cause}") from None

    async def _host_for(self, launch: Launch) -> Any:
        """The replica's actor: the one it had (alive), or a new one Ray places now."""
        host = self._hosts.get(launch.replica_id) or await asyncio.to_thread(
            self._named, launch.replica_id
        )
        if host is not None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(host.ping.remote().future()), 2.0)
                self._hosts[launch.replica_id] = host
                return host
            except (TimeoutError, self._ray.exceptions.RayActorError):
                await asyncio.to_thread(self._kill, host)
        host = self._actor_class.options(
            name=ACTOR_PREFIX + launch.replica_id,
            lifetime="detached",
            max_restarts=0,
            num_cpus=0,
            num_gpus=launch.deploy.gpu_num,
            # An endpoint's replicas on as many nodes as have room: one node's death
            # takes as few of them as it can.
            scheduling_strategy="SPREAD",
            resources=actor_resources(launch),
        ).remote(self.options)
        self._hosts[launch.replica_id] = host
        return host

    def _named(self, replica_id: str) -> Any:
        try:
            return self._ray.get_actor(ACTOR_PREFIX + replica_id, namespace=self.namespace)
        except ValueError:
            return None

    async def _owner_uid(self, launch: Launch) -> int | None:
        config = self.options.sandbox.config
        if not launch.sandboxed or config is None or not config.as_root:
            return None
        if self.owner_uids is None or not launch.user_id:
            raise StartError("this runtime was started without a record of owners' uids")
        try:
            return await asyncio.to_thread(self.owner_uids, launch.user_id)
        except UidsExhausted as exc:
            raise StartError(str(exc)) from exc

    def _waiting_for(self, launch: Launch) -> str:
        """What the replica waits for, in words for the endpoint's ``status_info``."""
        wanted = actor_resources(launch)
        if launch.deploy.gpu_num:
            wanted["GPU"] = float(launch.deploy.gpu_num)
        resources = cast("Callable[[], dict[str, float]]", self._ray.cluster_resources)
        total = resources()
        missing = [name for name, amount in wanted.items() if total.get(name, 0.0) < amount]
        if missing:
            return (
                "waiting for a Ray node that offers "
                + ", ".join(f"{name}={wanted[name]:g}" for name in missing)
                + " (none of the cluster's nodes does; the operator starts one with "
                "`ray start --resources=...`, docs/deploy.md)"
            )
        return (
            "waiting for a Ray node with "
            + ", ".join(f"{name}={amount:g}" for name, amount in sorted(wanted.items()))
            + " free"
        )

    async def capacity(self) -> Mapping[str, int]:
        """Units of each flavor on the cluster's live nodes (their ``--resources``)."""
        resources = cast("Callable[[], dict[str, float]]", self._ray.cluster_resources)
        total = await asyncio.to_thread(resources)
        return {
            name.removeprefix(FLAVOR_RESOURCE_PREFIX): int(amount)
            for name, amount in total.items()
            if name.startswith(FLAVOR_RESOURCE_PREFIX)
        }

    # -- stopping -------------------------------------------------------------------

    async def stop(self, replica_id: str) -> None:
        future = self._starts.pop(replica_id, None)
        if future is not None:
            future.cancel()
        host = self._hosts.pop(replica_id, None) or await asyncio.to_thread(self._named, replica_id)
        self._last.pop(replica_id, None)
        if host is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.wrap_future(host.stop.remote().future()),
                self.options.stop_grace_s + 5.0,
            )
        await asyncio.to_thread(self._kill, host)

    def _kill(self, host: Any) -> None:
        with contextlib.suppress(Exception):
            self._ray.kill(host, no_restart=True)

    # -- observing ------------------------------------------------------------------

    async def observe(self) -> Mapping[str, Observed]:
        names = await asyncio.to_thread(self._ray.util.list_named_actors)
        for name in names:
            replica_id = name.removeprefix(ACTOR_PREFIX)
            if name.startswith(ACTOR_PREFIX) and replica_id not in self._hosts:
                host = await asyncio.to_thread(self._named, replica_id)
                if host is not None:
                    self._hosts[replica_id] = host
        asking = [rid for rid in self._hosts if rid not in self._starts]
        answers = await asyncio.gather(*(self._observe_one(rid) for rid in asking))
        return {rid: seen for rid, seen in zip(asking, answers, strict=True) if seen is not None}

    async def _observe_one(self, replica_id: str) -> Observed | None:
        host = self._hosts[replica_id]
        last = self._last.get(replica_id)
        try:
            seen = await asyncio.wait_for(
                asyncio.wrap_future(host.observe.remote().future()), OBSERVE_TIMEOUT_S
            )
        except TimeoutError:
            return last
        except self._ray.exceptions.RayActorError as exc:
            if last is None:
                return None
            gone = Observed(
                replica_id=replica_id,
                endpoint_id=last.endpoint_id,
                revision=last.revision,
                address=None,
                running=False,
                output_tail=f"its Ray actor is gone: {_first_line(exc)}",
                labels=last.labels,
            )
            self._last[replica_id] = gone
            return gone
        if isinstance(seen, Observed):
            self._last[replica_id] = seen
            return seen
        return None

    # -- logs -----------------------------------------------------------------------

    async def logs(
        self, replica_id: str, *, tail: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        host = self._hosts.get(replica_id) or await asyncio.to_thread(self._named, replica_id)
        if host is None:
            return
        stream = host.logs.options(num_returns="streaming").remote(tail, follow)
        try:
            async for ref in stream:
                chunk = await ref
                if isinstance(chunk, bytes):
                    yield chunk
        except self._ray.exceptions.RayError:
            return  # its node is gone, and the log with it
        finally:
            with contextlib.suppress(Exception):
                self._ray.cancel(stream)

    async def close(self) -> None:
        """Disconnects from the cluster; the replicas' actors stay (they are detached)."""
        for future in self._starts.values():
            future.cancel()
        self._starts.clear()
        await asyncio.to_thread(self._ray.shutdown)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "died because" in line or "node" in line.lower():
            return line.strip()[:300]
    return text.splitlines()[0][:300] if text else type(exc).__name__
