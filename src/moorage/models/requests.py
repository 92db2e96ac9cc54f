"""Request bodies of the reference API, validated at the edge.

Numbers may arrive as strings (``"target_instance_number": "2"``, as the
reference's own PUT example sends); booleans never count as numbers; unknown
fields are rejected so a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

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


class DeployMetadataIn(_Strict):
    image_url: NonEmpty
    command: NonEmpty
    port: Port
    gpu_num: NonNegative = 0
    env: EnvVars = Field(default_factory=dict)


class CreateEndpointRequest(_Strict):
    name: Name
    description: Description = ""
    payment_type: PaymentType = "usd"
    resource_metadata: ResourceMetadataIn
    deploy_metadata: DeployMetadataIn


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


class UpdateEndpointRequest(_Strict):
    name: Name | None = None
    description: Description | None = None
    payment_type: PaymentType | None = None
    resource_metadata: ResourceMetadataPatch | None = None
    deploy_metadata: DeployMetadataPatch | None = None


class CreateUserRequest(_Strict):
    name: Name


class CreateTokenRequest(_Strict):
    user_id: str | None = None
    user_name: str | None = None
    name: Annotated[str, StringConstraints(max_length=128)] = ""
