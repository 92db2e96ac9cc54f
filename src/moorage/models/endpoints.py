"""An endpoint as the user asked for it, and as the store holds it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from moorage.models.autoscaling import ScalePolicy

# Re-exported: they were defined here before the registry held them.
from moorage.models.states import DesiredState as DesiredState
from moorage.models.states import EndpointStatus as EndpointStatus
from moorage.models.states import PolicyName


@dataclass(frozen=True)
class ReadinessProbe:
    """How moorage decides a replica may take traffic.

    A starting replica is probed from ``initial_delay_s`` after it started; a ready
    one every ``period_s``. One failed probe takes a ready replica out of rotation;
    ``failure_threshold`` failures in a row replace it. A replica that has not passed
    a probe ``startup_timeout_s`` after it started fails (None: the server's
    ``MOORAGE_READY_TIMEOUT_S``; a model server loading weights needs a long one).
    """

    path: str = "/"
    initial_delay_s: float = 0.0
    period_s: float = 1.0
    timeout_s: float = 2.0
    failure_threshold: int = 3
    startup_timeout_s: float | None = None


@dataclass(frozen=True)
class Resources:
    """Per-replica limits the container runtime enforces (the process runtime cannot)."""

    cpus: float | None = None
    memory_mb: int | None = None


# Where every replica finds its user's model cache (runtimes/model_cache.py): no volume
# may be mounted there, above it or inside it.
MODEL_CACHE_PATH = "/mnt/model-cache"


def _contains(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer + "/")


def _side_by_side(name: str) -> str:
    """A mount point for volume ``name`` that every runtime can make (the process
    runtime's sandbox has a tmpfs on /mnt) and that is not the model cache's."""
    path = f"/mnt/{name}"
    return "/mnt/weights" if _contains(path, MODEL_CACHE_PATH) else path


def mount_overlap(volumes: Sequence[Volume]) -> str | None:
    """Why these volumes cannot be mounted side by side, or None when they can: each
    needs a folder of its own, neither inside another's nor the model cache's, nor
    above them. A mount point inside a volume would be made through what the replica
    keeps there (a symlink it planted), so moorage never nests them."""
    taken = [("the model cache", MODEL_CACHE_PATH)]
    for volume in volumes:
        for what, path in taken:
            if _contains(path, volume.mount_path) or _contains(volume.mount_path, path):
                where = "is" if volume.mount_path == path else "overlaps"
                return (
                    f"mount_path {volume.mount_path[:64]!r} of volume {volume.name!r} {where} "
                    f"{path[:64]!r} of {what}: mount each volume at a folder of its own, side "
                    f"by side (such as {_side_by_side(volume.name)}), not inside another nor "
                    f"inside {MODEL_CACHE_PATH}"
                )
        taken.append((f"volume {volume.name!r}", volume.mount_path))
    return None


@dataclass(frozen=True)
class Volume:
    """A named volume of the endpoint's user, mounted at ``mount_path`` in each replica.

    It belongs to the user, not the endpoint: every endpoint of that user naming it
    shares it, another user's same name is another volume, and it outlives replicas
    and endpoints (model weights downloaded once are kept)."""

    name: str
    mount_path: str


@dataclass(frozen=True)
class DeploySpec:
    """What each replica runs; a change to it starts a new revision.

    ``command`` None runs the image as built: its own entrypoint, with ``args`` in
    place of the image's default command (docker runtime only; the process runtime
    runs a command, not an image). ``shm_size_mb`` None keeps the runtime's default
    ``/dev/shm``."""

    image_url: str
    command: str | None
    port: int
    gpu_num: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    readiness_probe: ReadinessProbe = field(default_factory=ReadinessProbe)
    resources: Resources = field(default_factory=Resources)
    args: tuple[str, ...] = ()
    volumes: tuple[Volume, ...] = ()
    shm_size_mb: int | None = None
    # Names of the owner's secrets each replica gets as environment variables; the
    # values live encrypted in the store and are read only to start a replica.
    secrets: tuple[str, ...] = ()

    @property
    def command_bytes(self) -> int:
        """What the replica is told to run, in UTF-8 bytes: the command and its args."""
        return len((self.command or "").encode()) + sum(len(a.encode()) for a in self.args)


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway admits the endpoint's requests; changing it restarts nothing.

    ``max_concurrency`` caps requests in flight per replica (None: no cap); past it,
    requests wait in a FIFO queue of ``max_queue`` for up to ``queue_timeout_s``.
    A request that could not reach a replica is tried on up to ``retries`` others.
    ``idle_timeout_s`` bounds silence from the replica (a stream that keeps sending
    is never cut); ``request_timeout_s``, when set, bounds the whole exchange.
    An automatic endpoint with no replica ready holds requests for up to
    ``cold_start_timeout_s`` while one starts (a request's
    ``X-Moorage-Cold-Start-Timeout`` header may ask for less or more, up to an hour).
    """

    policy: PolicyName = PolicyName.LEAST_OUTSTANDING
    max_concurrency: int | None = None
    max_queue: int = 100
    queue_timeout_s: float = 30.0
    retries: int = 1
    idle_timeout_s: float = 300.0
    request_timeout_s: float | None = None
    cold_start_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        # Read back from the store or a route file as a plain string.
        object.__setattr__(self, "policy", PolicyName(self.policy))


@dataclass(frozen=True)
class Endpoint:
    service_id: str
    user_id: str
    name: str
    description: str
    payment_type: str
    flavor_id: str
    scale_type: str
    target_instance_number: int
    deploy: DeploySpec
    revision: int
    desired_state: DesiredState
    service_type: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    # Set when moorage rolled a failed revision back; cleared by the next deploy change.
    rollout_note: str | None = None
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    # Why moorage, not the user, stopped it (a spending limit reached); its status_info
    # while stopped. Cleared when its user starts it.
    stop_reason: str | None = None
    # scale_type "auto": how the autoscaler sets target_instance_number, and when it
    # last changed it (its delays hold across a restart of moorage).
    scale_policy: ScalePolicy | None = None
    scaled_at: datetime | None = None

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def autoscaled(self) -> bool:
        return self.scale_policy is not None

    @property
    def reserved_instances(self) -> int:
        """What quotas and a flavor's capacity count it for: the replicas it asks for,
        or, scaled automatically, the most it may ask for (so that a scale-up always
        fits what was accepted)."""
        if self.scale_policy is None:
            return self.target_instance_number
        return max(self.target_instance_number, self.scale_policy.max_instances)

    @property
    def wanted_replicas(self) -> int:
        """How many replicas the controller should keep running right now."""
        if self.is_deleted or self.desired_state is DesiredState.STOPPED:
            return 0
        return self.target_instance_number


def deploy_to_json(deploy: DeploySpec) -> dict[str, Any]:
    return {
        "image_url": deploy.image_url,
        "command": deploy.command,
        "port": deploy.port,
        "gpu_num": deploy.gpu_num,
        "env": dict(deploy.env),
        "readiness_probe": asdict(deploy.readiness_probe),
        "resources": asdict(deploy.resources),
        "args": list(deploy.args),
        "volumes": [asdict(v) for v in deploy.volumes],
        "shm_size_mb": deploy.shm_size_mb,
        "secrets": list(deploy.secrets),
    }


def deploy_from_json(data: Mapping[str, Any]) -> DeploySpec:
    probe = data.get("readiness_probe") or {}
    return DeploySpec(
        image_url=str(data["image_url"]),
        command=None if data.get("command") is None else str(data["command"]),
        port=int(data["port"]),
        gpu_num=int(data.get("gpu_num", 0)),
        env={str(k): str(v) for k, v in dict(data.get("env", {})).items()},
        readiness_probe=ReadinessProbe(**probe),
        resources=Resources(**(data.get("resources") or {})),
        args=tuple(str(a) for a in data.get("args") or ()),
        volumes=tuple(Volume(**v) for v in data.get("volumes") or ()),
        shm_size_mb=None if data.get("shm_size_mb") is None else int(data["shm_size_mb"]),
        secrets=tuple(str(n) for n in data.get("secrets") or ()),
    )
