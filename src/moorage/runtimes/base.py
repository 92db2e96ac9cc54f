"""The one small interface every runtime implements.

A runtime knows nothing of endpoints' desired state: it starts what it is told,
stops what it is told, and reports what runs, with enough identity on each
replica (endpoint, replica, revision) that a restarted controller can adopt
what an earlier one started and reap what nobody owns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from moorage.models.endpoints import DeploySpec


@dataclass(frozen=True)
class Launch:
    replica_id: str
    endpoint_id: str
    revision: int
    deploy: DeploySpec
    # A normal user's replica runs isolated from moorage and other tenants; only the
    # (trusted) admin's may run as moorage's own user. Safe by default.
    sandboxed: bool = True
    # The UUIDs of the GPUs this replica was given (``controller/gpu_placement.py``);
    # empty when it needs none, or its flavor has no GPU inventory (then the runtime
    # asks for any ``deploy.gpu_num`` GPUs, as before inventories).
    gpus: tuple[str, ...] = ()
    # The endpoint's owner: named volumes are the user's (``volumes.py``).
    user_id: str = ""
    # The values of ``deploy.secrets``, by name, for the replica's environment: never
    # in a repr, a log line or an error message.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The owner's credentials for the image's registry (``username``, ``password``,
    # ``serveraddress``), when they stored some: the docker runtime pulls with them.
    registry_auth: Mapping[str, str] | None = field(default=None, repr=False)
    # The flavor's key (its ``cluster_flavor_id``): the ``ray`` runtime asks Ray for a
    # node offering the flavor's resource; the local runtimes have one host and ignore it.
    flavor_key: str = ""


@dataclass(frozen=True)
class Observed:
    """What the runtime sees of one replica it started (now or in an earlier life)."""

    replica_id: str
    endpoint_id: str
    revision: int
    address: str | None
    running: bool
    exit_code: int | None = None
    output_tail: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class StartError(Exception):
    """The runtime could not start a replica; the message says what the user can fix."""


class StartPending(Exception):
    """The replica cannot start yet (its image is being pulled); try again next pass.

    ``progress`` is shown to users as the endpoint's ``status_info``.
    """

    def __init__(self, progress: str) -> None:
        super().__init__(progress)
        self.progress = progress


class Runtime(Protocol):
    name: str

    async def start(self, launch: Launch) -> str:
        """Starts a replica and returns the ``host:port`` it will serve on."""
        ...

    async def stop(self, replica_id: str) -> None:
        """Stops a replica and everything it spawned. Stopping a gone replica is a no-op."""
        ...

    async def observe(self) -> Mapping[str, Observed]:
        """Every replica this runtime knows of, running or exited, by replica id."""
        ...

    def logs(self, replica_id: str, *, tail: int | None, follow: bool) -> AsyncIterator[bytes]:
        """The replica's stdout and stderr: the last ``tail`` lines (all when None),
        then, with ``follow``, new output as it comes until the replica stops."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class ReportsCapacity(Protocol):
    """A runtime over a cluster whose nodes, not moorage's flavors file, say how many
    replicas of each flavor fit (the ``ray`` runtime)."""

    async def capacity(self) -> Mapping[str, int]:
        """Units of each flavor (by key) on the cluster's live nodes."""
        ...
