"""Flavors: the kinds of machine slot an endpoint can run on, owned by the operator.

A flavor's ``capacity`` is how many replicas of it the operator's machines can
hold at once; ``available_num`` on the wire is that capacity minus what running
endpoints hold. A GPU flavor (one with ``gpus``, see ``models/gpus.py``) counts
GPUs instead: its capacity is its number of GPUs, and each replica is given
``gpu_num`` of them by UUID. Flavor ids are derived from the flavor's identity (cluster,
cluster flavor, region) unless the file names one, so they survive restarts and
re-ordering of the file.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from moorage.errors import ErrorCode, MoorageError
from moorage.models.gpus import Gpu

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
    # The GPUs its replicas are given, one by one; empty for a flavor of replica slots.
    gpus: tuple[Gpu, ...] = ()
    # The NVML model name whose discovered GPUs join this flavor (flavors file only).
    gpu_model: str | None = None

    @property
    def has_gpus(self) -> bool:
        return bool(self.gpus)

    def price_per_hour(self, currency: str) -> float:
        return float(self.prices.get(currency, 0.0))

    def priced_in(self) -> tuple[str, ...]:
        """The currencies it has a price in; () for a flavor the operator gives away."""
        return tuple(c for c in CURRENCIES if self.price_per_hour(c) > 0)

    def offer(self) -> str:
        """What it offers and at what price, in words: the line moorage logs at start,
        so an operator sees which prices apply after changing the flavors file."""
        size = f"{len(self.gpus)} GPUs" if self.has_gpus else f"{self.capacity} replicas"
        unit = "per GPU-hour" if self.has_gpus or self.node_max_gpu else "per replica-hour"
        priced = self.priced_in()
        prices = (
            ", ".join(f"{self.price_per_hour(c):g} {c}" for c in priced) + f" {unit}"
            if priced
            else "free"
        )
        return f"flavor {self.display_name} ({self.flavor_id}): {size}, {prices}"

    def billing(self) -> dict[str, float]:
        return {f"{currency}_price_unit": self.price_per_hour(currency) for currency in CURRENCIES}


@dataclass(frozen=True)
class StoredFlavor:
    """A flavor with its history in the store: ``deleted_at`` is set once the
    operator's list drops it, while endpoints created on it still name it."""

    flavor: Flavor
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class FlavorFileError(MoorageError):
    """The operator's flavor file cannot be served (``flavor_file.py`` reads it)."""

    code = ErrorCode.INVALID_FLAVOR_FILE


def stable_flavor_id(cluster_id: str, cluster_flavor_id: str, region: str) -> str:
    return uuid.uuid5(_FLAVOR_NAMESPACE, f"{cluster_id}/{cluster_flavor_id}/{region}").hex
