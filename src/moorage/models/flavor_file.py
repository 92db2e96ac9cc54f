"""The operator's flavor file (TOML, one ``[[flavor]]`` table each) as pydantic models.

The file is checked strictly: ``capacity = "4"``, ``capacity = true`` and a
misspelt key (``capacty``) are errors, not silently converted or ignored, since
the operator would otherwise serve a flavor other than the one they wrote.
Every error names the file, the flavor (its position and ``display_name``) and
the field.

GPU flavors (docs/gpus.md): ``gpu_model`` names the NVML model whose discovered
GPUs join the flavor (so the operator prices and renames it), ``gpus`` declares
GPUs NVML cannot see, and a top-level ``hidden_gpus`` lists UUIDs never offered.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from moorage.models.flavors import CURRENCIES, Flavor, FlavorFileError, stable_flavor_id
from moorage.models.gpus import LOCAL_NODE, Gpu

__all__ = ["DeclaredGpu", "FlavorEntry", "load_flavor_file", "load_hidden_gpus"]

# TOML gives ints for ids like `cluster_id = 1`; they mean the same as "1".
_Name = Annotated[str | int, Field(union_mode="left_to_right")]
_Count = Annotated[int, Field(ge=0)]
# A price is finite: an infinite one would make every cost undefined.
_Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Scalar = str | int | float | bool


class Billing(BaseModel):
    """Price per GPU per hour (per replica on a flavor without GPUs), per currency; a
    currency not given is free (docs/billing.md)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    usd_price_unit: _Price = 0.0
    cny_price_unit: _Price = 0.0
    nmt_price_unit: _Price = 0.0

    def prices(self) -> dict[str, float]:
        return {currency: float(getattr(self, f"{currency}_price_unit")) for currency in CURRENCIES}


_GpuText = Annotated[str, Field(min_length=1, max_length=128)]
# A flavors file declares hosts' GPUs; far more than one machine room holds is a typo.
MAX_DECLARED_GPUS = 4096


class DeclaredGpu(BaseModel):
    """A GPU the flavor offers that NVML does not report (another host, or tests)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    uuid: _GpuText
    index: _Count = 0
    node: _GpuText = LOCAL_NODE
    memory_mib: _Count = 0

    def to_gpu(self, model: str) -> Gpu:
        return Gpu(self.node, self.index, self.uuid, model, self.memory_mib)


class FlavorEntry(BaseModel):
    """One ``[[flavor]]`` table. ``flavor_id`` is derived from ``cluster_id``,
    ``cluster_flavor_id`` and ``meta_info.region`` when absent, so it survives
    restarts, re-ordering, renaming and repricing."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    display_name: _Name
    cluster_flavor_id: _Name
    cluster_id: _Name = "1"
    flavor_id: str | None = None
    capacity: _Count = 1
    node_max_gpu: _Count = 0
    vram: _Name | None = None
    meta_info: dict[str, _Scalar] = Field(default_factory=dict)
    billing: Billing = Field(default_factory=Billing)
    gpu_model: _GpuText | None = None
    gpus: list[DeclaredGpu] = Field(default_factory=list, max_length=MAX_DECLARED_GPUS)

    @field_validator("gpus")
    @classmethod
    def _distinct_gpus(cls, value: list[DeclaredGpu]) -> list[DeclaredGpu]:
        uuids = [g.uuid for g in value]
        if len(set(uuids)) != len(uuids):
            raise ValueError("a GPU uuid appears twice")
        slots = [(g.node, g.index) for g in value]
        if len(set(slots)) != len(slots):
            raise ValueError("two GPUs have the same node and index")
        return value

    def _gpus(self) -> tuple[Gpu, ...]:
        model = self.gpu_model or str(self.display_name)
        return tuple(sorted(g.to_gpu(model) for g in self.gpus))

    @field_validator("flavor_id")
    @classmethod
    def _hex_id(cls, value: str | None) -> str | None:
        if value is not None and (
            len(value) != 32 or any(c not in "0123456789abcdef" for c in value)
        ):
            raise ValueError("must be 32 lowercase hex characters")
        return value

    def to_flavor(self) -> Flavor:
        meta_info = {key: str(value) for key, value in self.meta_info.items()}
        cluster_id = str(self.cluster_id)
        cluster_flavor_id = str(self.cluster_flavor_id)
        return Flavor(
            flavor_id=self.flavor_id
            or stable_flavor_id(cluster_id, cluster_flavor_id, meta_info.get("region", "")),
            display_name=str(self.display_name),
            cluster_id=cluster_id,
            cluster_flavor_id=cluster_flavor_id,
            capacity=self.capacity,
            node_max_gpu=self.node_max_gpu,
            meta_info=meta_info,
            prices=self.billing.prices(),
            vram=None if self.vram is None else str(self.vram),
            gpus=self._gpus(),
            gpu_model=self.gpu_model,
        )


def load_flavor_file(path: Path) -> list[Flavor]:
    """Reads the file's flavors, in its order; raises ``FlavorFileError`` naming the
    file, the flavor and the field to fix."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FlavorFileError(f"cannot read flavor file {path}: {exc}") from exc
    entries = document.get("flavor")
    if not isinstance(entries, list) or not entries:
        raise FlavorFileError(f"{path}: expected one or more [[flavor]] tables")
    flavors = [_entry(path, index, entry).to_flavor() for index, entry in enumerate(entries)]
    seen: set[str] = set()
    for flavor in flavors:
        if flavor.flavor_id in seen:
            raise FlavorFileError(f"{path}: flavor id {flavor.flavor_id} appears twice")
        seen.add(flavor.flavor_id)
    owner: dict[str, str] = {}
    for flavor in flavors:
        for gpu in flavor.gpus:
            if gpu.uuid in owner:
                raise FlavorFileError(
                    f"{path}: GPU {gpu.uuid} is declared in flavors {owner[gpu.uuid]!r} and "
                    f"{flavor.display_name!r}; a GPU belongs to one flavor"
                )
            owner[gpu.uuid] = flavor.display_name
    return flavors


def load_hidden_gpus(path: Path) -> frozenset[str]:
    """The top-level ``hidden_gpus``: UUIDs of GPUs NVML finds that are never offered
    (kept for something else on the host)."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FlavorFileError(f"cannot read flavor file {path}: {exc}") from exc
    hidden = document.get("hidden_gpus", [])
    if not isinstance(hidden, list) or not all(
        isinstance(u, str) and 0 < len(u) <= 128 for u in hidden
    ):
        raise FlavorFileError(f"{path}: hidden_gpus must be a list of GPU UUID strings")
    if len(hidden) > MAX_DECLARED_GPUS:
        raise FlavorFileError(f"{path}: hidden_gpus lists more than {MAX_DECLARED_GPUS} GPUs")
    return frozenset(hidden)


def _entry(path: Path, index: int, entry: Any) -> FlavorEntry:
    where = f"{path}: flavor #{index + 1}"
    if not isinstance(entry, dict):
        raise FlavorFileError(f"{where}: must be a table")
    if isinstance(entry.get("display_name"), str):
        where += f" ({entry['display_name']!r})"
    try:
        return FlavorEntry.model_validate(entry)
    except ValidationError as exc:
        raise FlavorFileError(f"{where}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        # A union's branch name ("str", "int") is pydantic's, not the file's.
        loc = [str(p) for p in error["loc"] if p not in ("str", "int", "float", "bool")]
        field = ".".join(loc) or "table"
        kind = error["type"]
        if kind == "missing":
            problems.append(f"{field}: required key is missing")
        elif kind == "extra_forbidden":
            problems.append(f"{field}: unknown key; check its spelling")
        elif kind == "value_error":
            problems.append(f"{field}: {error['ctx']['error']}")
        else:
            problems.append(f"{field}: {error['msg']}, got {error.get('input')!r}")
    return "; ".join(dict.fromkeys(problems))
