"""Stopped endpoints' route entries follow writes by reading only what was written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from moorage.controller.idle_routes import LATE_COMMIT, IdleRoutes
from moorage.models.endpoints import DesiredState, GatewaySettings
from moorage.store.endpoints import IdleChange, IdleEndpoint
from tests.unit.builders import T0, at

TOKENS = {"user-1": frozenset({"hash-1"})}


def stopped(service_id: str) -> IdleEndpoint:
    return IdleEndpoint(service_id, "user-1", DesiredState.STOPPED, GatewaySettings())


@dataclass
class Store:
    """Endpoints as (updated_at, idle entry or None when it wants replicas)."""

    rows: dict[str, tuple[datetime, IdleEndpoint | None]] = field(default_factory=dict)
    full_loads: int = 0
    change_reads: list[datetime] = field(default_factory=list)

    def list_idle(self) -> Sequence[IdleEndpoint]:
        self.full_loads += 1
        return [idle for _, idle in self.rows.values() if idle is not None]

    def idle_changes(self, since: datetime) -> Sequence[IdleChange]:
        self.change_reads.append(since)
        return [
            IdleChange(service_id, updated_at, idle)
            for service_id, (updated_at, idle) in self.rows.items()
            if updated_at >= since
        ]

    def last_update(self) -> datetime | None:
        return max((updated_at for updated_at, _ in self.rows.values()), default=None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_write_reads_what_changed_since_the_last_look_not_every_endpoint() -> None:
    store = Store({f"ep-{i}": (T0, stopped(f"ep-{i}")) for i in range(100)})
    idle = IdleRoutes(monotonic=Clock())
    assert len(idle.routes(store, TOKENS)) == 100
    idle.routes(store, TOKENS)
    assert (store.full_loads, store.change_reads) == (1, [])  # nothing changed: no read

    store.rows["ep-1"] = (at(3600), None)  # started: it wants replicas now
    store.rows["new"] = (at(3601), stopped("new"))  # created, then stopped
    idle.changed()
    routes = idle.routes(store, TOKENS)

    assert store.full_loads == 1
    assert store.change_reads == [T0 - LATE_COMMIT]
    assert "ep-1" not in routes
    assert routes["new"].status_hint == "stopped"
    assert routes["new"].owner_token_hashes == frozenset({"hash-1"})
    assert len(routes) == 100

    store.rows["ep-2"] = (at(3700), None)
    idle.changed()
    assert "ep-2" not in idle.routes(store, TOKENS)
    # The next read starts at the newest write seen, less the margin for late commits.
    assert store.change_reads[-1] == at(3601) - LATE_COMMIT


def test_every_refresh_reloads_all_a_write_stamped_too_early_is_not_lost() -> None:
    clock = Clock()
    store = Store({"ep-1": (at(3600), stopped("ep-1"))})
    idle = IdleRoutes(refresh_s=60, monotonic=clock)
    idle.routes(store, TOKENS)
    # A write whose clock was behind by more than the margin: the change read misses it.
    store.rows["late"] = (at(3600) - LATE_COMMIT - timedelta(seconds=1), stopped("late"))
    idle.changed()
    assert "late" not in idle.routes(store, TOKENS)
    clock.now = 60.0
    assert "late" in idle.routes(store, TOKENS)
    assert store.full_loads == 2


def test_an_empty_store_then_a_first_endpoint() -> None:
    store = Store()
    idle = IdleRoutes(monotonic=Clock())
    assert idle.routes(store, TOKENS) == {}
    idle.routes(store, TOKENS)
    assert store.full_loads == 1
    store.rows["ep-1"] = (T0, stopped("ep-1"))
    idle.changed()
    assert "ep-1" in idle.routes(store, TOKENS)
