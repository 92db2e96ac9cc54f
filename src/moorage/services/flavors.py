"""Flavors with live availability."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from moorage.clock import Clock
from moorage.models.builtin_flavors import builtin_flavors
from moorage.models.flavor_file import load_flavor_file
from moorage.models.flavors import Flavor, StoredFlavor
from moorage.settings import Settings
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.flavors import FlavorRepository


@dataclass(frozen=True)
class FlavorAvailability:
    stored: StoredFlavor
    available_num: int


def configured_flavors(settings: Settings) -> list[Flavor]:
    """The operator's file when there is one (an explicit MOORAGE_FLAVORS must exist),
    else the built-in set."""
    path = settings.flavors_file
    if settings.flavors is not None or path.exists():
        return load_flavor_file(path)
    return builtin_flavors()


class FlavorService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def sync(self, flavors: Sequence[Flavor]) -> None:
        with self.db.session() as session:
            FlavorRepository(session).sync(flavors, self.clock.now())

    def list(self) -> list[FlavorAvailability]:
        with self.db.session() as session:
            endpoints = EndpointRepository(session)
            return [
                FlavorAvailability(
                    s, max(0, s.flavor.capacity - endpoints.held_instances(s.flavor.flavor_id))
                )
                for s in FlavorRepository(session).list_live()
            ]
