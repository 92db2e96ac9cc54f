"""Request bodies of the reference API, validated at the edge.

Numbers may arrive as strings (``"target_instance_number": "2"``, as the
reference's own PUT example sends); booleans never count as numbers; unknown
fields are rejected so a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from moorage.models.endpoints import DeploySpec, GatewaySettings, ReadinessProbe, Resources
from moorage.models.flavors import CURRENCIES

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
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Description = Annotated[str, StringConstraints(max_length=2048)]
EnvVars = dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResourceMetadataIn(_Strict):
    flavor_id: NonEmpty
    scale_type: Literal["manual"] = "manual"
    target_instance_number: WholeNumber = 1
    scale_policy: None = None


Seconds = Annotated[float, BeforeValidator(_no_bool), Field(ge=0, le=3600)]
ProbePath = Annotated[str, StringConstraints(pattern=r"^/[^\s]*$", max_length=1024)]


class ReadinessProbeIn(_Strict):
    path: ProbePath = "/"
    initial_delay_s: Seconds = 0.0
    period_s: Annotated[float, BeforeValidator(_no_bool), Field(ge=0.1, le=3600)] = 1.0
    timeout_s: Annotated[float, BeforeValidator(_no_bool), Field(gt=0, le=600)] = 2.0
    failure_threshold: Annotated[WholeNumber, Field(ge=1, le=100)] = 3

    def to_probe(self) -> ReadinessProbe:
        return ReadinessProbe(**self.model_dump())


class ResourcesIn(_Strict):
    cpus: Annotated[float, BeforeValidator(_no_bool), Field(gt=0, le=1024)] | None = None
    memory_mb: Annotated[WholeNumber, Field(ge=16, le=16 * 1024 * 1024)] | None = None

    def to_resources(self) -> Resources:
        return Resources(**self.model_dump())


class DeployMetadataIn(_Strict):
    image_url: NonEmpty
    command: NonEmpty
    port: Port
    gpu_num: NonNegative = 0
    env: EnvVars = Field(default_factory=dict)
    readiness_probe: ReadinessProbeIn = Field(default_factory=ReadinessProbeIn)
    resources: ResourcesIn = Field(default_factory=ResourcesIn)

    def to_spec(self) -> DeploySpec:
        return DeploySpec(
            image_url=self.image_url,
            command=self.command,
            port=self.port,
            gpu_num=self.gpu_num,
            env=dict(self.env),
            readiness_probe=self.readiness_probe.to_probe(),
            resources=self.resources.to_resources(),
        )


PolicyName = Literal["least_outstanding", "power_of_two", "round_robin"]


# A day: long enough for any stream, short enough to catch a typo'd unit.
TimeoutSeconds = Annotated[float, BeforeValidator(_no_bool), Field(gt=0, le=86_400)]
_REMOVABLE_LIMITS = frozenset({"max_concurrency", "request_timeout_s"})


class GatewayMetadataIn(_Strict):
    policy: PolicyName = "least_outstanding"
    max_concurrency: Annotated[WholeNumber, Field(ge=1, le=100_000)] | None = None
    max_queue: Annotated[WholeNumber, Field(ge=0, le=100_000)] = 100
    queue_timeout_s: Annotated[float, BeforeValidator(_no_bool), Field(gt=0, le=3600)] = 30.0
    retries: Annotated[WholeNumber, Field(ge=0, le=10)] = 1
    idle_timeout_s: TimeoutSeconds = 300.0
    request_timeout_s: TimeoutSeconds | None = None

    def to_settings(self) -> GatewaySettings:
        return GatewaySettings(**self.model_dump())


class GatewayMetadataPatch(_Strict):
    policy: PolicyName | None = None
    max_concurrency: Annotated[WholeNumber, Field(ge=1, le=100_000)] | None = None
    max_queue: Annotated[WholeNumber, Field(ge=0, le=100_000)] | None = None
    queue_timeout_s: Annotated[float, BeforeValidator(_no_bool), Field(gt=0, le=3600)] | None = None
    retries: Annotated[WholeNumber, Field(ge=0, le=10)] | None = None
    idle_timeout_s: TimeoutSeconds | None = None
    request_timeout_s: TimeoutSeconds | None = None

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
    scale_type: Literal["manual"] | None = None
    target_instance_number: WholeNumber | None = None
    scale_policy: None = None


class DeployMetadataPatch(_Strict):
    image_url: NonEmpty | None = None
    command: NonEmpty | None = None
    port: Port | None = None
    gpu_num: NonNegative | None = None
    env: EnvVars | None = None
    readiness_probe: ReadinessProbeIn | None = None
    resources: ResourcesIn | None = None

    def apply_to(self, current: DeploySpec) -> DeploySpec:
        """The spec with the fields this patch sets; a probe or resources object is
        replaced as a whole."""
        changes: dict[str, Any] = self.model_dump(
            exclude_none=True, exclude={"readiness_probe", "resources"}
        )
        if self.readiness_probe is not None:
            changes["readiness_probe"] = self.readiness_probe.to_probe()
        if self.resources is not None:
            changes["resources"] = self.resources.to_resources()
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
    user_id: str | None = None
    user_name: str | None = None
    name: Annotated[str, StringConstraints(max_length=128)] = ""
