"""Request bodies of the reference API, validated at the edge.

Numbers may arrive as strings (``"target_instance_number": "2"``, as the
reference's own PUT example sends); booleans never count as numbers; unknown
fields are rejected so a typo is an error, not a silently ignored setting.

Every string has a maximum length and every dict a maximum size, written as
JSON-Schema keywords so clients see them. These are absolute caps, above any
user's quota (``services/quotas.py`` applies the per-user limits below them).
Control characters are refused in every free-text field: a NUL in a command or
an environment value can never reach ``execve`` and used to leave an endpoint
``initializing`` forever. ``command`` alone may hold tabs and newlines, which
multi-line shell scripts need.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from moorage.models.autoscaling import ScaleMetric, ScalePolicy
from moorage.models.demand import EndpointDemand
from moorage.models.endpoints import (
    DeploySpec,
    GatewaySettings,
    ReadinessProbe,
    Resources,
    Volume,
    mount_overlap,
)
from moorage.models.flavors import CURRENCIES
from moorage.models.images import IMAGE_REFERENCE_PATTERN, image_reference_problem
from moorage.models.states import PolicyName

PaymentType = Literal["usd", "cny", "nmt"]
assert set(CURRENCIES) == {"usd", "cny", "nmt"}


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true/false")
    if isinstance(value, str):
        return value.strip()
    return value


WholeNumber = Annotated[int, BeforeValidator(_no_bool)]
Port = Annotated[WholeNumber, Field(ge=1, le=65535)]
NonNegative = Annotated[WholeNumber, Field(ge=0)]

# Absolute caps (see the module docstring); quotas sit below them.
MAX_NAME_CHARS = 128
MAX_DESCRIPTION_CHARS = 2048
MAX_COMMAND_BYTES = 64 * 1024
MAX_IMAGE_URL_CHARS = 1024
MAX_ID_CHARS = 64
MAX_ENV_VARS = 256
MAX_ENV_NAME_CHARS = 256
MAX_ENV_BYTES = 64 * 1024
MAX_PROBE_PATH_CHARS = 1024
MAX_ARGS = 256
MAX_VOLUMES = 16
MAX_MOUNT_PATH_CHARS = 1024
MAX_SHM_SIZE_MB = 1024 * 1024  # 1 TiB: far past any host, short of an overflow
# Where a volume may not be mounted: the system's own folders, which a replica needs
# as the image (or the host) has them. Another path moorage mounts itself (a model
# cache) belongs here too.
RESERVED_MOUNT_PATHS: tuple[str, ...] = (
    "/proc",
    "/dev",
    "/sys",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/boot",
)

# C0 controls, DEL and C1 controls, and the characters that reorder or break text as
# it is shown (bidirectional marks, embeddings, overrides and isolates; line and
# paragraph separators): a name shown in another user's table or the admin's usage
# report must read as it is. The command's variant keeps tab and newline.
_SHOWN_AS_IS = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_CONTROL = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_SHOWN_AS_IS}]")
_CONTROL_IN_COMMAND = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_SHOWN_AS_IS}]")
NO_CONTROL_PATTERN = f"^[^\\x00-\\x1f\\x7f-\\x9f{_SHOWN_AS_IS}]*$"
COMMAND_PATTERN = f"^[^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_SHOWN_AS_IS}]*$"


def _refuse(pattern: re.Pattern[str], allowed: str) -> Any:
    def check(value: str) -> str:
        found = pattern.search(value)
        if found is not None:
            raise ValueError(
                f"must not contain control or text-direction characters{allowed} "
                f"(found U+{ord(found.group()):04X} at position {found.start()}); "
                "remove it or encode the value"
            )
        return value

    return AfterValidator(check)


_PLAIN = _refuse(_CONTROL, "")
_PLAIN_SCHEMA = Field(json_schema_extra={"pattern": NO_CONTROL_PATTERN})


def _text(max_length: int, *, min_length: int = 0, strip: bool = False) -> Any:
    return StringConstraints(strip_whitespace=strip, min_length=min_length, max_length=max_length)


Name = Annotated[str, _text(MAX_NAME_CHARS, min_length=1, strip=True), _PLAIN, _PLAIN_SCHEMA]
NonEmpty = Annotated[str, _text(MAX_ID_CHARS, min_length=1, strip=True), _PLAIN, _PLAIN_SCHEMA]


def _image_reference(value: str) -> str:
    problem = image_reference_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


ImageUrl = Annotated[
    str,
    _text(MAX_IMAGE_URL_CHARS, min_length=1, strip=True),
    _PLAIN,
    AfterValidator(_image_reference),
    Field(json_schema_extra={"pattern": IMAGE_REFERENCE_PATTERN}),
]
Command = Annotated[
    str,
    _text(MAX_COMMAND_BYTES, min_length=1, strip=True),
    _refuse(_CONTROL_IN_COMMAND, " other than tab and newline"),
    Field(json_schema_extra={"pattern": COMMAND_PATTERN}),
]
Description = Annotated[str, _text(MAX_DESCRIPTION_CHARS), _PLAIN, _PLAIN_SCHEMA]
Arg = Annotated[
    str,
    _text(MAX_COMMAND_BYTES),
    _refuse(_CONTROL_IN_COMMAND, " other than tab and newline"),
    Field(json_schema_extra={"pattern": COMMAND_PATTERN}),
]


def _args_total(args: list[str]) -> list[str]:
    total = sum(len(a.encode()) for a in args)
    if total > MAX_COMMAND_BYTES:
        raise ValueError(
            f"take {total} bytes, more than the {MAX_COMMAND_BYTES} allowed; "
            "pass large data as a file the app reads"
        )
    return args


Args = Annotated[list[Arg], Field(max_length=MAX_ARGS), AfterValidator(_args_total)]
VolumeName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"),
    Field(
        description="Letters, digits, `_`, `.` and `-`, at most 63, starting with a letter "
        "or digit. The same name in another endpoint of the same user is the same volume."
    ),
]


# A mount point every runtime can make: the process runtime's sandbox puts a tmpfs on
# /mnt (a folder such as /data exists on few hosts), and /mnt/model-cache is taken.
MOUNT_PATH_ADVICE = (
    "mount the volume at a folder of its own under /mnt, such as /mnt/weights "
    "(not /mnt itself nor /mnt/model-cache)"
)


def _mount_path(path: str) -> str:
    if not path.startswith("/") or path != "/" + "/".join(p for p in path.split("/") if p):
        # The caller's value is quoted once, by the API's error message.
        raise ValueError("must be an absolute path without empty parts or a trailing slash")
    if any(part in (".", "..") for part in path.split("/")):
        raise ValueError("must not contain . or .. parts")
    if path == "/":
        raise ValueError(f"must not be / itself; {MOUNT_PATH_ADVICE}")
    for reserved in RESERVED_MOUNT_PATHS:
        if path == reserved or path.startswith(reserved + "/"):
            raise ValueError(
                f"must not be {reserved} or inside it: the replica needs the system's own "
                f"{reserved}; {MOUNT_PATH_ADVICE}"
            )
    return path


MountPath = Annotated[
    str,
    StringConstraints(max_length=MAX_MOUNT_PATH_CHARS),
    _PLAIN,
    _PLAIN_SCHEMA,
    AfterValidator(_mount_path),
]
ShmSizeMb = Annotated[WholeNumber, Field(ge=1, le=MAX_SHM_SIZE_MB)]
# Variables that choose which GPUs a replica gets: the NVIDIA container runtime grants
# every device NVIDIA_VISIBLE_DEVICES names, so only moorage sets them (from gpu_num).
GPU_SELECTING_VARIABLES = ("CUDA_VISIBLE_DEVICES",)
GPU_SELECTING_PREFIX = "NVIDIA_"


def not_gpu_selecting(name: str) -> str:
    if name.startswith(GPU_SELECTING_PREFIX) or name in GPU_SELECTING_VARIABLES:
        raise ValueError(
            f"{name[:64]} is set by moorage alone: it chooses the GPUs a replica may use, "
            "which are the ones deploy_metadata.gpu_num gives it; remove it (a replica sees "
            "its own GPUs in CUDA_VISIBLE_DEVICES)"
        )
    return name


EnvName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=MAX_ENV_NAME_CHARS),
    AfterValidator(not_gpu_selecting),
]
EnvValue = Annotated[str, _text(MAX_ENV_BYTES), _PLAIN, _PLAIN_SCHEMA]
# A secret is named like the variable it becomes in the replica (services/secrets.py).
MAX_SECRET_NAME_CHARS = 128
MAX_SECRET_BYTES = 32 * 1024
MAX_ENDPOINT_SECRETS = 64
SecretName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=MAX_SECRET_NAME_CHARS),
    AfterValidator(not_gpu_selecting),
]


def _distinct_names(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise ValueError("names a secret twice; name each once")
    return names


SecretNames = Annotated[
    list[SecretName], Field(max_length=MAX_ENDPOINT_SECRETS), AfterValidator(_distinct_names)
]


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError("holds a NUL character, which no environment variable can carry")
    return value


REGISTRY_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?$"


class RegistryCredentialIn(BaseModel):
    """``PUT /v1/registry-credentials/{registry}``: what the registry's login takes."""

    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(min_length=1, max_length=256), _PLAIN]
    password: Annotated[
        str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_no_nul)
    ]


class SecretIn(BaseModel):
    """``PUT /v1/secrets/{name}``: the value, at most 32 KiB of UTF-8, without NUL."""

    model_config = ConfigDict(extra="forbid")

    value: Annotated[
        str, StringConstraints(min_length=1, max_length=MAX_SECRET_BYTES), AfterValidator(_no_nul)
    ]


def env_bytes(env: dict[str, str]) -> int:
    """What an environment costs: ``NAME=value`` in UTF-8, as the replica receives it."""
    return sum(len(k.encode()) + 1 + len(v.encode()) for k, v in env.items())


def _env_total(env: dict[str, str]) -> dict[str, str]:
    total = env_bytes(env)
    if total > MAX_ENV_BYTES:
        raise ValueError(
            f"takes {total} bytes as NAME=value pairs, more than the {MAX_ENV_BYTES} allowed; "
            "pass large data as a file the command fetches"
        )
    return env


EnvVars = Annotated[
    dict[EnvName, EnvValue],
    Field(max_length=MAX_ENV_VARS, json_schema_extra={"additionalProperties": False}),
    AfterValidator(_env_total),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# scale_policy: bounds written once for the create body and the PUT patch; defaults
# come from ScalePolicy (docs/autoscaling.md says why each is what it is).
_SCALE_DEFAULTS = ScalePolicy()
# -0.0 becomes 0.0: it would be shown back as "-0.0".
_UNSIGNED_ZERO = AfterValidator(lambda value: value + 0.0)
# A hundredth of a request per replica at least: demand divided by a smaller target
# asks for more replicas than a float can count.
ScaleTarget = Annotated[
    float, BeforeValidator(_no_bool), Field(ge=0.01, le=100_000), _UNSIGNED_ZERO
]
Instances = Annotated[WholeNumber, Field(ge=0, le=10_000)]
MaxInstances = Annotated[WholeNumber, Field(ge=1, le=10_000)]
DelaySeconds = Annotated[float, BeforeValidator(_no_bool), Field(ge=0, le=86_400), _UNSIGNED_ZERO]
WindowSeconds = Annotated[float, BeforeValidator(_no_bool), Field(ge=2, le=3600)]


def _min_within_max(minimum: int, maximum: int) -> None:
    if minimum > maximum:
        raise ValueError(
            f"min_instances {minimum} is above max_instances {maximum}; "
            "give a min_instances at most max_instances"
        )


class ScalePolicyIn(_Strict):
    """How an automatic endpoint scales: see docs/autoscaling.md."""

    metric: ScaleMetric = _SCALE_DEFAULTS.metric
    target: ScaleTarget = _SCALE_DEFAULTS.target
    min_instances: Instances = _SCALE_DEFAULTS.min_instances
    max_instances: MaxInstances = _SCALE_DEFAULTS.max_instances
    scale_up_delay_s: DelaySeconds = _SCALE_DEFAULTS.scale_up_delay_s
    scale_down_delay_s: DelaySeconds = _SCALE_DEFAULTS.scale_down_delay_s
    window_s: WindowSeconds = _SCALE_DEFAULTS.window_s

    @model_validator(mode="after")
    def _bounds(self) -> ScalePolicyIn:
        _min_within_max(self.min_instances, self.max_instances)
        return self

    def to_policy(self) -> ScalePolicy:
        return dataclasses.replace(_SCALE_DEFAULTS, **self.model_dump())


class ScalePolicyPatch(_Strict):
    """A partial change of the policy: fields left out keep their value."""

    metric: ScaleMetric | None = None
    target: ScaleTarget | None = None
    min_instances: Instances | None = None
    max_instances: MaxInstances | None = None
    scale_up_delay_s: DelaySeconds | None = None
    scale_down_delay_s: DelaySeconds | None = None
    window_s: WindowSeconds | None = None

    def apply_to(self, current: ScalePolicy) -> ScalePolicy:
        return dataclasses.replace(current, **self.model_dump(exclude_none=True))


ScaleType = Literal["manual", "auto"]


class ResourceMetadataIn(_Strict):
    flavor_id: NonEmpty
    scale_type: ScaleType = "manual"
    # With scale_type "auto": the count it starts at, kept within the policy's bounds.
    target_instance_number: WholeNumber = 1
    scale_policy: ScalePolicyIn | None = None

    @model_validator(mode="after")
    def _policy_with_auto(self) -> ResourceMetadataIn:
        if self.scale_type == "manual" and self.scale_policy is not None:
            raise ValueError(
                'scale_policy applies to scale_type "auto" only; set scale_type to "auto" '
                "or leave scale_policy out (null)"
            )
        return self


Seconds = Annotated[float, BeforeValidator(_no_bool), Field(ge=0, le=3600)]
ProbePath = Annotated[
    str,
    StringConstraints(pattern=r"^/[^\s]*$", max_length=MAX_PROBE_PATH_CHARS),
    _PLAIN,
]


class ReadinessProbeIn(_Strict):
    path: ProbePath = "/"
    initial_delay_s: Seconds = 0.0
    period_s: Annotated[float, BeforeValidator(_no_bool), Field(ge=0.1, le=3600)] = 1.0
    timeout_s: Annotated[float, BeforeValidator(_no_bool), Field(gt=0, le=600)] = 2.0
    failure_threshold: Annotated[WholeNumber, Field(ge=1, le=100)] = 3
    # A day at most: long enough for any model to load, short enough to catch a typo.
    startup_timeout_s: (
        Annotated[float, BeforeValidator(_no_bool), Field(ge=1, le=86_400)] | None
    ) = None

    def to_probe(self) -> ReadinessProbe:
        return ReadinessProbe(**self.model_dump())


class ResourcesIn(_Strict):
    cpus: Annotated[float, BeforeValidator(_no_bool), Field(gt=0, le=1024)] | None = None
    memory_mb: Annotated[WholeNumber, Field(ge=16, le=16 * 1024 * 1024)] | None = None

    def to_resources(self) -> Resources:
        return Resources(**self.model_dump())


class VolumeIn(_Strict):
    name: VolumeName
    mount_path: MountPath

    def to_volume(self) -> Volume:
        return Volume(self.name, self.mount_path)


def _distinct_volumes(volumes: list[VolumeIn]) -> list[VolumeIn]:
    for key in ("name", "mount_path"):
        seen: set[str] = set()
        for volume in volumes:
            value = getattr(volume, key)
            if value in seen:
                raise ValueError(f"{key} {value[:64]!r} appears twice; each volume once")
            seen.add(value)
    overlap = mount_overlap([volume.to_volume() for volume in volumes])
    if overlap is not None:
        raise ValueError(overlap)
    return volumes


Volumes = Annotated[
    list[VolumeIn], Field(max_length=MAX_VOLUMES), AfterValidator(_distinct_volumes)
]


class DeployMetadataIn(_Strict):
    image_url: ImageUrl
    # None: run the image's own entrypoint (docker runtime; see DeploySpec).
    command: Command | None = None
    port: Port
    gpu_num: NonNegative = 0
    env: EnvVars = Field(default_factory=dict)
    readiness_probe: ReadinessProbeIn = Field(default_factory=ReadinessProbeIn)
    resources: ResourcesIn = Field(default_factory=ResourcesIn)
    args: Args = Field(default_factory=list)
    volumes: Volumes = Field(default_factory=list)
    shm_size_mb: ShmSizeMb | None = None
    # Names of the caller's secrets (PUT /v1/secrets/NAME), given to each replica as
    # environment variables of those names.
    secrets: SecretNames = Field(default_factory=list)

    def to_spec(self) -> DeploySpec:
        return DeploySpec(
            image_url=self.image_url,
            command=self.command,
            port=self.port,
            gpu_num=self.gpu_num,
            env=dict(self.env),
            readiness_probe=self.readiness_probe.to_probe(),
            resources=self.resources.to_resources(),
            args=tuple(self.args),
            volumes=tuple(v.to_volume() for v in self.volumes),
            shm_size_mb=self.shm_size_mb,
            secrets=tuple(self.secrets),
        )


# gateway_metadata: each field's bounds are written here once, for the create body,
# the PUT patch and the route-table file alike; defaults come from GatewaySettings.
# A day: long enough for any stream, short enough to catch a typo'd unit.
TimeoutSeconds = Annotated[float, BeforeValidator(_no_bool), Field(gt=0, le=86_400)]
QueueTimeoutSeconds = Annotated[float, BeforeValidator(_no_bool), Field(gt=0, le=3600)]
MaxConcurrency = Annotated[WholeNumber, Field(ge=1, le=100_000)]
MaxQueue = Annotated[WholeNumber, Field(ge=0, le=100_000)]
Retries = Annotated[WholeNumber, Field(ge=0, le=10)]
_REMOVABLE_LIMITS = frozenset({"max_concurrency", "request_timeout_s"})
_GATEWAY_DEFAULTS = GatewaySettings()


class GatewayMetadataIn(_Strict):
    policy: PolicyName = _GATEWAY_DEFAULTS.policy
    max_concurrency: MaxConcurrency | None = _GATEWAY_DEFAULTS.max_concurrency
    max_queue: MaxQueue = _GATEWAY_DEFAULTS.max_queue
    queue_timeout_s: QueueTimeoutSeconds = _GATEWAY_DEFAULTS.queue_timeout_s
    retries: Retries = _GATEWAY_DEFAULTS.retries
    idle_timeout_s: TimeoutSeconds = _GATEWAY_DEFAULTS.idle_timeout_s
    request_timeout_s: TimeoutSeconds | None = _GATEWAY_DEFAULTS.request_timeout_s
    cold_start_timeout_s: QueueTimeoutSeconds = _GATEWAY_DEFAULTS.cold_start_timeout_s

    def to_settings(self) -> GatewaySettings:
        return GatewaySettings(**self.model_dump())


class GatewayMetadataPatch(_Strict):
    policy: PolicyName | None = None
    max_concurrency: MaxConcurrency | None = None
    max_queue: MaxQueue | None = None
    queue_timeout_s: QueueTimeoutSeconds | None = None
    retries: Retries | None = None
    idle_timeout_s: TimeoutSeconds | None = None
    request_timeout_s: TimeoutSeconds | None = None
    cold_start_timeout_s: QueueTimeoutSeconds | None = None

    def apply_to(self, current: GatewaySettings) -> GatewaySettings:
        """Sets the fields the patch names; ``null`` removes a limit that may be absent
        (``max_concurrency``, ``request_timeout_s``) and is ignored elsewhere."""
        changes = {
            k: getattr(self, k)
            for k in self.model_fields_set
            if getattr(self, k) is not None or k in _REMOVABLE_LIMITS
        }
        return dataclasses.replace(current, **changes)


class CreateEndpointRequest(_Strict):
    name: Name
    description: Description = ""
    payment_type: PaymentType = "usd"
    resource_metadata: ResourceMetadataIn
    deploy_metadata: DeployMetadataIn
    gateway_metadata: GatewayMetadataIn = Field(default_factory=GatewayMetadataIn)


class ResourceMetadataPatch(_Strict):
    flavor_id: NonEmpty | None = None
    scale_type: ScaleType | None = None
    target_instance_number: WholeNumber | None = None
    scale_policy: ScalePolicyPatch | None = None


# Fields a PUT may set to null to go back to their default: no command (the image's
# entrypoint runs) and the runtime's own /dev/shm size.
_REMOVABLE_DEPLOY = frozenset({"command", "shm_size_mb"})


class DeployMetadataPatch(_Strict):
    image_url: ImageUrl | None = None
    command: Command | None = None
    port: Port | None = None
    gpu_num: NonNegative | None = None
    env: EnvVars | None = None
    readiness_probe: ReadinessProbeIn | None = None
    resources: ResourcesIn | None = None
    args: Args | None = None
    volumes: Volumes | None = None
    shm_size_mb: ShmSizeMb | None = None
    secrets: SecretNames | None = None

    def apply_to(self, current: DeploySpec) -> DeploySpec:
        """The spec with the fields this patch sets; a probe, resources, ``args`` or
        ``volumes`` is replaced as a whole; ``null`` removes ``command`` or
        ``shm_size_mb`` and is ignored elsewhere."""
        changes: dict[str, Any] = self.model_dump(
            exclude_none=True,
            exclude={"readiness_probe", "resources", "args", "volumes", "secrets"},
        )
        changes.update(
            {k: None for k in _REMOVABLE_DEPLOY & self.model_fields_set if getattr(self, k) is None}
        )
        if self.readiness_probe is not None:
            changes["readiness_probe"] = self.readiness_probe.to_probe()
        if self.resources is not None:
            changes["resources"] = self.resources.to_resources()
        if self.args is not None:
            changes["args"] = tuple(self.args)
        if self.volumes is not None:
            changes["volumes"] = tuple(v.to_volume() for v in self.volumes)
        if self.secrets is not None:
            changes["secrets"] = tuple(self.secrets)
        return dataclasses.replace(current, **changes)


class UpdateEndpointRequest(_Strict):
    name: Name | None = None
    description: Description | None = None
    payment_type: PaymentType | None = None
    resource_metadata: ResourceMetadataPatch | None = None
    deploy_metadata: DeployMetadataPatch | None = None
    gateway_metadata: GatewayMetadataPatch | None = None


class CreateUserRequest(_Strict):
    name: Name


class CreateTokenRequest(_Strict):
    user_id: NonEmpty | None = None
    user_name: Name | None = None
    name: Annotated[str, _text(MAX_NAME_CHARS), _PLAIN, _PLAIN_SCHEMA] = ""


Count = Annotated[WholeNumber, Field(ge=0, le=1_000_000)]


class QuotaPatch(_Strict):
    """A partial change of one user's quotas: fields left out keep their value, ``null``
    goes back to the server's default (``MOORAGE_QUOTA_*``). A limit can never exceed
    the absolute caps above, which hold for every user."""

    endpoints: Count | None = None
    replicas: Count | None = None
    flavor_share: Annotated[float, BeforeValidator(_no_bool), Field(ge=0, le=1)] | None = None
    command_bytes: Annotated[WholeNumber, Field(ge=1, le=MAX_COMMAND_BYTES)] | None = None
    env_vars: Annotated[WholeNumber, Field(ge=0, le=MAX_ENV_VARS)] | None = None
    env_bytes: Annotated[WholeNumber, Field(ge=0, le=MAX_ENV_BYTES)] | None = None
    name_chars: Annotated[WholeNumber, Field(ge=1, le=MAX_NAME_CHARS)] | None = None
    description_chars: Annotated[WholeNumber, Field(ge=0, le=MAX_DESCRIPTION_CHARS)] | None = None
    log_followers: Annotated[WholeNumber, Field(ge=0, le=10_000)] | None = None
    secrets: Annotated[WholeNumber, Field(ge=0, le=1000)] | None = None


# A standalone gateway's demand report (POST /v1/gateway/demand): bounded like every
# input, although only the admin's token may send one.
MAX_REPORTED_ENDPOINTS = 10_000
GatewayId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
]
ReportedServiceId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
Requests = Annotated[WholeNumber, Field(ge=0, le=10_000_000)]


Counted = Annotated[WholeNumber, Field(ge=0, le=2**53)]
RequestSeconds = Annotated[float, BeforeValidator(_no_bool), Field(ge=0, le=1e15)]


class EndpointDemandIn(_Strict):
    in_flight: Requests = 0
    waiting: Requests = 0
    arrived: Counted = 0
    held: Counted = 0
    busy_s: RequestSeconds = 0.0
    waited_s: RequestSeconds = 0.0
    answered: Counted = 0
    errors: Counted = 0
    latency_s: RequestSeconds = 0.0

    def to_demand(self) -> EndpointDemand:
        return EndpointDemand(**self.model_dump())


class GatewayDemandIn(_Strict):
    gateway: GatewayId
    endpoints: Annotated[
        dict[ReportedServiceId, EndpointDemandIn], Field(max_length=MAX_REPORTED_ENDPOINTS)
    ] = Field(default_factory=dict)
