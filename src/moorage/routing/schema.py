"""The route table's JSON as pydantic models: what ``moorage gateway --routes FILE``
reads and what the control plane sends its gateways.

Unknown keys are errors, since a misspelt key (``replica`` for ``replicas``) would
otherwise serve a table other than the one written. A validation error becomes one
``MoorageError`` naming the source (the file or the control plane's URL), each wrong
field by its path (``endpoints[0].gateway_metadata.retries``) and what it allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from moorage.errors import MoorageError
from moorage.models.requests import GatewayMetadataIn
from moorage.models.states import DesiredState

__all__ = ["EndpointIn", "ReplicaIn", "RouteTableIn", "parse_route_table"]

_NonEmpty = Annotated[str, Field(min_length=1)]
_EXPECTED = '{"endpoints": [{"service_id": "...", "tokens": ["..."], "replicas": ["host:port"]}]}'


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplicaIn(_Model):
    """A replica: ``{"replica_id": ..., "address": ...}``, or in a file just its
    ``"host:port"`` (its id is then made up from its position)."""

    replica_id: _NonEmpty | None = None
    address: _NonEmpty

    @model_validator(mode="before")
    @classmethod
    def _bare_address(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"address": value}
        if not isinstance(value, dict):
            raise ValueError('give "host:port" or {"replica_id": "...", "address": "host:port"}')
        return value


class EndpointIn(_Model):
    """One endpoint: who may call it (plain ``tokens`` in a file, or their sha256
    digests), its replicas, whether it runs, its gateway settings."""

    service_id: _NonEmpty
    tokens: list[str] = Field(default_factory=list)
    token_sha256: list[str] = Field(default_factory=list)
    replicas: list[ReplicaIn] = Field(default_factory=list)
    status: DesiredState = DesiredState.RUNNING
    gateway_metadata: GatewayMetadataIn = Field(default_factory=GatewayMetadataIn)
    # Hold requests while a replica starts from zero (an automatic endpoint).
    scales_from_zero: bool = False
    # Why its replica cannot start: held requests are told at once.
    cannot_start: Annotated[str, Field(max_length=1024)] | None = None

    @model_validator(mode="after")
    def _callable_by_someone(self) -> EndpointIn:
        if not (self.tokens or self.token_sha256):
            raise ValueError("give 'tokens' (or 'token_sha256') allowed to call it")
        return self


class RouteTableIn(_Model):
    endpoints: list[EndpointIn]
    known_token_sha256: list[str] = Field(default_factory=list)
    version: str | None = None  # the control plane's digest of the content


# The model whose keys are allowed under a location's last named key.
_MODEL_UNDER: dict[str, type[BaseModel]] = {
    "": RouteTableIn,
    "endpoints": EndpointIn,
    "replicas": ReplicaIn,
    "gateway_metadata": GatewayMetadataIn,
}


def parse_route_table(body: Any, source: str) -> RouteTableIn:
    """Validates ``body``; raises ``MoorageError`` naming ``source``, the fields and
    what each allows."""
    try:
        return RouteTableIn.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(dict.fromkeys(_describe(error) for error in exc.errors()))
        raise MoorageError(f"route table {source}: {problems}") from None


def _describe(error: ErrorDetails) -> str:
    loc = error["loc"]
    field = _path(loc) or "the table"
    kind = error["type"]
    if kind == "missing":
        return f"{field}: required key is missing"
    if kind == "extra_forbidden":
        allowed = ", ".join(_MODEL_UNDER[_parent_key(loc[:-1])].model_fields)
        return f"{field}: unknown key; give one of {allowed}"
    if kind == "value_error":
        return f"{field}: {error['ctx']['error']}"
    if kind in ("model_type", "dict_type"):
        if len(loc) <= 2:  # the table itself or an endpoint
            return f"{field}: give an object; a route table reads {_EXPECTED}"
        return f"{field}: give an object, not {error.get('input')!r}"
    return f"{field}: {error['msg'].removeprefix('Input ')}, not {error.get('input')!r}"


def _path(loc: Sequence[int | str]) -> str:
    """``('endpoints', 0, 'status')`` as ``endpoints[0].status``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path


def _parent_key(loc: Sequence[int | str]) -> str:
    named = [part for part in loc if isinstance(part, str)]
    return named[-1] if named else ""
