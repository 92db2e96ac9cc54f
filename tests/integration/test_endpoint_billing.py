"""An endpoint's costs as ``billing_metadata`` shows them (``EndpointBillingService``),
on SQLite and PostgreSQL, with a fake clock: what its replicas billing now cost per
hour at the rates fixed when each was placed, and its cost so far and this month."""

from __future__ import annotations

from decimal import Decimal

from moorage.clock import FakeClock
from moorage.services.endpoint_billing import EndpointBillingService
from moorage.store.db import Database
from moorage.store.metering import checkpoint_usage
from tests.integration.test_store_metering import _at, _endpoint, _price, _record, _replica


def test_the_price_per_hour_is_what_the_replicas_billing_now_cost(db: Database) -> None:
    _price(db, 2.5)
    endpoint = _endpoint(db, gpu_num=2)  # 5 usd an hour a replica
    old = _replica(db, endpoint)
    _record(db, old, endpoint, "started", 0)
    _price(db, 4.0, at=10)  # the operator raises the price: 8 usd an hour a replica
    new = _replica(db, endpoint, at=20)
    _record(db, new, endpoint, "started", 20)
    waiting = _replica(db, endpoint, at=30)  # requested, not placed: not billed
    service = EndpointBillingService(db, FakeClock(_at(3600)))

    billing = service.costs([endpoint])[endpoint.service_id]

    assert billing.billed_per_hour == Decimal("13.0"), "5 (placed before) + 8 (after)"
    # 3600 s at 5 usd/h and 3580 s at 8 usd/h, to the second.
    assert billing.cost_so_far == Decimal("12.955556")
    assert billing.cost_this_month == billing.cost_so_far

    _record(db, old, endpoint, "stopped", 3700)
    _record(db, new, endpoint, "failed", 3700)
    checkpoint_usage(db, _at(3800))
    later = EndpointBillingService(db, FakeClock(_at(3800))).costs([endpoint])
    assert later[endpoint.service_id].billed_per_hour == 0, "nothing bills in a backoff"
    assert waiting  # still requested: it never billed
    # 3700 s at 5 and 3680 s at 8, checkpointed or not, the same to the second.
    assert later[endpoint.service_id].cost_so_far == Decimal("13.316667")
