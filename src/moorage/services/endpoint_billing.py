"""What an endpoint costs, for its ``billing_metadata``: its price per hour now, and what
its replicas have cost so far and this UTC month, to the second.

Costs are read from usage (``store/usage.py``: stored records plus the seconds since the
last checkpoint), in the endpoint's currency, at the rates fixed when its replicas were
placed, so they match what ``GET /v1/usage`` says. The price per hour is today's flavor
price, which is what new replicas would be billed at. Its owner's budget in its
currency, when the admin set one, says whether spending is near or at the limit. One
read serves a whole page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from moorage.clock import Clock
from moorage.models.billing import GroupBy, month_start, usage_totals
from moorage.models.budgets import BudgetStatus
from moorage.models.endpoints import Endpoint
from moorage.models.flavors import Flavor
from moorage.models.metering import EPOCH
from moorage.services.budgets import budget_statuses_for
from moorage.store.db import Database
from moorage.store.usage import UsageRepository

__all__ = ["EndpointBilling", "EndpointBillingService", "instance_price_per_hour"]

_NOTHING = Decimal(0)


def instance_price_per_hour(flavor: Flavor | None, endpoint: Endpoint) -> Decimal:
    """One replica's price per hour now: the flavor's price per GPU times ``gpu_num``
    (a flavor without GPUs is priced per instance), in the endpoint's currency."""
    if flavor is None:
        return _NOTHING
    per_gpu = Decimal(repr(flavor.price_per_hour(endpoint.payment_type)))
    return per_gpu * max(endpoint.deploy.gpu_num, 1)


@dataclass(frozen=True)
class EndpointBilling:
    """An endpoint's costs in its own currency."""

    cost_so_far: Decimal = _NOTHING
    cost_this_month: Decimal = _NOTHING
    # What its replicas billing now cost per hour, each at the rate fixed when placed.
    billed_per_hour: Decimal = _NOTHING
    # Its owner's worst budget in its currency, when one is set.
    budget: BudgetStatus | None = None


class EndpointBillingService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def costs(self, endpoints: Sequence[Endpoint]) -> dict[str, EndpointBilling]:
        """Every endpoint's costs so far and this month, keyed by its id (one read)."""
        if not endpoints:
            return {}
        now = self.clock.now()
        ids = [e.service_id for e in endpoints]
        with self.db.session() as session:
            usage = UsageRepository(session).up_to(now, endpoint_ids=ids)
            budgets = {
                (status.budget.currency, user_id): status
                for user_id in {e.user_id for e in endpoints}
                for status in budget_statuses_for(session, user_id, now)
            }
        total = usage_totals(usage.records, usage.rates, GroupBy.ENDPOINT, EPOCH, now)
        month = usage_totals(usage.records, usage.rates, GroupBy.ENDPOINT, month_start(now), now)
        month_by_id = {t.key: t for t in month}
        total_by_id = {t.key: t for t in total}
        per_hour: dict[str, Decimal] = {}
        for rate in usage.billing_now.values():
            per_hour[rate.endpoint_id] = (
                per_hour.get(rate.endpoint_id, _NOTHING) + rate.instance_price_per_hour
            )
        found: dict[str, EndpointBilling] = {}
        for endpoint in endpoints:
            currency = endpoint.payment_type
            so_far = total_by_id.get(endpoint.service_id)
            this_month = month_by_id.get(endpoint.service_id)
            found[endpoint.service_id] = EndpointBilling(
                cost_so_far=so_far.costs.get(currency, _NOTHING) if so_far else _NOTHING,
                cost_this_month=this_month.costs.get(currency, _NOTHING)
                if this_month
                else _NOTHING,
                budget=budgets.get((currency, endpoint.user_id)),
                billed_per_hour=per_hour.get(endpoint.service_id, _NOTHING),
            )
        return found
