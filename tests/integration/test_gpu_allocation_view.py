"""Who holds each GPU as ``/metrics`` reads it, on both stores: the live flavors'
GPUs with each holder's endpoint and replica, read again only once the cache ages."""

from __future__ import annotations

from moorage.services.gpu_metrics import GpuAllocationView
from moorage.store.db import Database
from moorage.store.flavors import FlavorRepository
from tests.integration.test_store_gpus import FLAVOR, allocate, endpoint, replica
from tests.unit.builders import T0


def test_holders_come_from_the_store_at_most_once_per_max_age(db: Database) -> None:
    with db.session() as session:
        FlavorRepository(session).sync([FLAVOR], T0)
    ep = endpoint(db, "ep-1", target=2)
    replica(db, "r-1", ep.service_id, 0)
    replica(db, "r-2", ep.service_id, 1)
    allocate(db, "r-1", ep.service_id, FLAVOR.gpus[0])
    now = [100.0]
    view = GpuAllocationView(db, max_age_s=5, monotonic=lambda: now[0])

    first = view.current()
    assert first.gpus == FLAVOR.gpus
    assert dict(first.holders) == {"GPU-0": ("ep-1", "r-1")}

    allocate(db, "r-2", ep.service_id, FLAVOR.gpus[1])
    now[0] += 4.9
    assert view.current() is first  # a scrape within max_age does not touch the store
    now[0] += 0.1
    assert dict(view.current().holders) == {"GPU-0": ("ep-1", "r-1"), "GPU-1": ("ep-1", "r-2")}
