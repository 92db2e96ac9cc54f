"""Flavor sync on a real store: the store follows the operator's list, softly."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from moorage.models.flavors import Flavor, StoredFlavor
from moorage.store.db import Database
from moorage.store.flavors import FlavorRepository

T0 = datetime(2026, 2, 1, 8, 0, 0, 500_000, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=10)
T3 = T0 + timedelta(minutes=15)

SMALL = Flavor(
    flavor_id="a" * 32,
    display_name="RTX 4090 x1",
    cluster_id="1",
    cluster_flavor_id="rtx4090-1",
    capacity=4,
    node_max_gpu=1,
    meta_info={"region": "eu-west", "gpu": "RTX 4090"},
    prices={"usd": 0.5, "cny": 3.6, "nmt": 0.0},
    vram="24GB",
)
LARGE = Flavor(
    flavor_id="b" * 32,
    display_name="H100 x8",
    cluster_id="2",
    cluster_flavor_id="h100-8",
    capacity=1,
    node_max_gpu=8,
    meta_info={"region": "us-east"},
    prices={"usd": 20.0, "cny": 144.0, "nmt": 1.25},
    vram=None,
)


def _sync(db: Database, flavors: list[Flavor], now: datetime) -> None:
    with db.session() as session:
        FlavorRepository(session).sync(flavors, now)


def _live(db: Database) -> dict[str, StoredFlavor]:
    with db.session() as session:
        return {s.flavor.flavor_id: s for s in FlavorRepository(session).list_live()}


def _get(db: Database, flavor_id: str) -> StoredFlavor:
    with db.session() as session:
        stored = FlavorRepository(session).get(flavor_id)
    assert stored is not None, f"flavor {flavor_id} is not in the store at all"
    return stored


def test_sync_inserts_every_flavor_with_all_fields(db: Database) -> None:
    _sync(db, [SMALL, LARGE], T0)

    live = _live(db)
    assert set(live) == {SMALL.flavor_id, LARGE.flavor_id}
    assert live[SMALL.flavor_id].flavor == SMALL
    assert live[LARGE.flavor_id].flavor == LARGE
    for stored in live.values():
        assert stored.created_at == T0
        assert stored.updated_at == T0
        assert stored.created_at.tzinfo == UTC
        assert stored.deleted_at is None
    with db.session() as session:
        assert FlavorRepository(session).get("c" * 32) is None


def test_sync_updates_only_changed_flavors(db: Database) -> None:
    _sync(db, [SMALL, LARGE], T0)
    bigger = dataclasses.replace(
        SMALL, capacity=8, meta_info={"region": "eu-west", "gpu": "RTX 4090 (24GB)"}
    )

    _sync(db, [bigger, LARGE], T1)

    changed, unchanged = _get(db, SMALL.flavor_id), _get(db, LARGE.flavor_id)
    assert changed.flavor == bigger
    assert changed.created_at == T0
    assert changed.updated_at == T1
    assert unchanged.flavor == LARGE
    assert unchanged.created_at == T0
    assert unchanged.updated_at == T0, "an unchanged flavor must keep its updated_at"


def test_sync_notices_a_price_change_alone(db: Database) -> None:
    _sync(db, [SMALL], T0)
    repriced = dataclasses.replace(SMALL, prices={"usd": 0.75, "cny": 3.6, "nmt": 0.0})

    _sync(db, [repriced], T1)

    stored = _get(db, SMALL.flavor_id)
    assert stored.flavor.price_per_hour("usd") == 0.75
    assert stored.updated_at == T1


def test_sync_soft_deletes_dropped_flavors_and_revives_them(db: Database) -> None:
    _sync(db, [SMALL, LARGE], T0)

    _sync(db, [SMALL], T1)

    assert set(_live(db)) == {SMALL.flavor_id}
    dropped = _get(db, LARGE.flavor_id)
    assert dropped.deleted_at == T1
    assert dropped.flavor == LARGE, "a dropped flavor still shows what endpoints ran on"
    assert dropped.created_at == T0

    _sync(db, [SMALL], T2)  # a second sync without it keeps the first deletion time
    assert _get(db, LARGE.flavor_id).deleted_at == T1

    returned = dataclasses.replace(LARGE, capacity=2)
    _sync(db, [SMALL, returned], T3)

    live = _live(db)
    assert set(live) == {SMALL.flavor_id, LARGE.flavor_id}
    revived = live[LARGE.flavor_id]
    assert revived.deleted_at is None
    assert revived.flavor == returned
    assert revived.created_at == T0
    assert revived.updated_at == T3
    assert live[SMALL.flavor_id].updated_at == T0


def test_sync_revives_an_unchanged_flavor(db: Database) -> None:
    _sync(db, [SMALL, LARGE], T0)
    _sync(db, [SMALL], T1)

    _sync(db, [SMALL, LARGE], T2)

    revived = _get(db, LARGE.flavor_id)
    assert revived.deleted_at is None
    assert revived.updated_at == T2
    assert LARGE.flavor_id in _live(db)


def test_list_live_is_ordered_by_creation(db: Database) -> None:
    _sync(db, [LARGE], T0)
    _sync(db, [LARGE, SMALL], T1)

    with db.session() as session:
        ids = [s.flavor.flavor_id for s in FlavorRepository(session).list_live()]
    assert ids == [LARGE.flavor_id, SMALL.flavor_id]


def test_sync_in_a_failed_session_block_changes_nothing(db: Database) -> None:
    _sync(db, [SMALL, LARGE], T0)

    def sync_then_fail() -> None:
        with db.session() as session:
            FlavorRepository(session).sync([dataclasses.replace(SMALL, capacity=0)], T1)
            session.flush()
            raise RuntimeError("start aborted")

    with pytest.raises(RuntimeError, match="aborted"):
        sync_then_fail()

    live = _live(db)
    assert set(live) == {SMALL.flavor_id, LARGE.flavor_id}
    assert live[SMALL.flavor_id].flavor == SMALL
    assert live[SMALL.flavor_id].updated_at == T0


def test_a_clusters_capacity_is_written_to_the_flavors_it_names(db: Database) -> None:
    _sync(db, [SMALL, LARGE], T0)

    with db.session() as session:
        changed = FlavorRepository(session).set_capacities({"rtx4090-1": 9, "h100-8": 1}, T1)

    assert [f.cluster_flavor_id for f in changed] == ["rtx4090-1"]  # h100-8 was 1 already
    live = _live(db)
    assert live[SMALL.flavor_id].flavor.capacity == 9
    assert live[SMALL.flavor_id].updated_at == T1
    assert live[LARGE.flavor_id].flavor.capacity == 1
    assert live[LARGE.flavor_id].updated_at == T0
    with db.session() as session:
        again = FlavorRepository(session).set_capacities({"rtx4090-1": 9}, T2)
    assert again == []
