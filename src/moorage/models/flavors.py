"""Flavors: the kinds of machine slot an endpoint can run on, owned by the operator.

A flavor's ``capacity`` is how many replicas of it the operator's machines can
hold at once; ``available_num`` on the wire is that capacity minus what running
endpoints hold. Flavor ids are derived from the flavor's identity (cluster,
cluster flavor, region) unless the file names one, so they survive restarts and
re-ordering of the file.
"""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moorage.errors import MoorageError

_FLAVOR_NAMESPACE = uuid.UUID("6f1c3d2a-58b4-4f0e-9a57-6d6f6f726167")
CURRENCIES = ("usd", "cny", "nmt")


@dataclass(frozen=True)
class Flavor:
    flavor_id: str
    display_name: str
    cluster_id: str
    cluster_flavor_id: str
    capacity: int
    node_max_gpu: int
    meta_info: Mapping[str, str] = field(default_factory=dict)
    prices: Mapping[str, float] = field(default_factory=dict)
    vram: str | None = None

    def price_per_hour(self, currency: str) -> float:
        return float(self.prices.get(currency, 0.0))

    def billing(self) -> dict[str, float]:
        return {f"{currency}_price_unit": self.price_per_hour(currency) for currency in CURRENCIES}


class FlavorFileError(MoorageError):
    code = "invalid_flavor_file"


def stable_flavor_id(cluster_id: str, cluster_flavor_id: str, region: str) -> str:
    return uuid.uuid5(_FLAVOR_NAMESPACE, f"{cluster_id}/{cluster_flavor_id}/{region}").hex


def load_flavor_file(path: Path) -> list[Flavor]:
    """Reads ``[[flavor]]`` tables; every error names the entry and the key to fix."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FlavorFileError(f"cannot read flavor file {path}: {exc}") from exc
    entries = document.get("flavor")
    if not isinstance(entries, list) or not entries:
        raise FlavorFileError(f"{path}: expected one or more [[flavor]] tables")
    flavors = [_flavor_from_entry(path, index, entry) for index, entry in enumerate(entries)]
    seen: set[str] = set()
    for flavor in flavors:
        if flavor.flavor_id in seen:
            raise FlavorFileError(f"{path}: flavor id {flavor.flavor_id} appears twice")
        seen.add(flavor.flavor_id)
    return flavors


def _flavor_from_entry(path: Path, index: int, entry: Any) -> Flavor:
    where = f"{path}: flavor #{index + 1}"
    if not isinstance(entry, dict):
        raise FlavorFileError(f"{where}: must be a table")
    try:
        display_name = str(entry["display_name"])
        cluster_flavor_id = str(entry["cluster_flavor_id"])
    except KeyError as missing:
        raise FlavorFileError(f"{where}: missing key {missing}") from None
    cluster_id = str(entry.get("cluster_id", "1"))
    raw_meta = entry.get("meta_info", {})
    if not isinstance(raw_meta, dict):
        raise FlavorFileError(f'{where}: meta_info must be a table, e.g. {{ region = "eu" }}')
    meta_info = {str(k): str(v) for k, v in raw_meta.items()}
    capacity = _whole_number(where, "capacity", entry.get("capacity", 1))
    node_max_gpu = _whole_number(where, "node_max_gpu", entry.get("node_max_gpu", 0))
    billing = entry.get("billing", {})
    if not isinstance(billing, dict):
        raise FlavorFileError(f"{where}: billing must be a table of <currency>_price_unit keys")
    prices: dict[str, float] = {}
    for currency in CURRENCIES:
        value = billing.get(f"{currency}_price_unit", 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise FlavorFileError(f"{where}: billing.{currency}_price_unit must be a number >= 0")
        prices[currency] = float(value)
    flavor_id = str(
        entry.get("flavor_id")
        or stable_flavor_id(cluster_id, cluster_flavor_id, meta_info.get("region", ""))
    )
    if len(flavor_id) != 32 or any(c not in "0123456789abcdef" for c in flavor_id):
        raise FlavorFileError(f"{where}: flavor_id must be 32 lowercase hex characters")
    vram = entry.get("vram")
    return Flavor(
        flavor_id=flavor_id,
        display_name=display_name,
        cluster_id=cluster_id,
        cluster_flavor_id=cluster_flavor_id,
        capacity=capacity,
        node_max_gpu=node_max_gpu,
        meta_info=meta_info,
        prices=prices,
        vram=str(vram) if vram is not None else None,
    )


def _whole_number(where: str, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FlavorFileError(f"{where}: {key} must be a whole number >= 0, got {value!r}")
    return value
