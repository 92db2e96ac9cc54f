"""Fixing a replica's rate at its first placement, in the transaction that records it.

The rate is written with the replica's first ``started`` event, so the price is the
flavor's price at that moment and no replica is placed without one; later
``started`` events (restarts, an adoption) find it there and keep it
(``docs/billing.md``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from moorage.models.billing import ReplicaRate, fix_rate
from moorage.models.endpoints import deploy_from_json
from moorage.models.flavors import CURRENCIES
from moorage.store.flavors import FlavorRepository
from moorage.store.tables import EndpointRevisionRow, EndpointRow, ReplicaRateRow, ReplicaRow

log = logging.getLogger(__name__)


def fix_rate_once(session: Session, replica: ReplicaRow, placed_at: datetime) -> None:
    """Stores the replica's rate unless it has one. Its flavor and ``gpu_num`` are its
    own revision's (a rollout's new replicas may run on another flavor); a flavor gone
    from the store bills nothing, as an unpriced one does."""
    if session.get(ReplicaRateRow, replica.replica_id) is not None:
        return
    endpoint = session.get(EndpointRow, replica.endpoint_id)
    if endpoint is None:
        return
    if endpoint.payment_type not in CURRENCIES:
        # The API accepts currencies only; a start is recorded whatever the store holds.
        log.warning(
            "replica %s is not billed: its endpoint's payment_type %r is not one of %s",
            replica.replica_id,
            endpoint.payment_type,
            ", ".join(CURRENCIES),
        )
        return
    spec = session.get(EndpointRevisionRow, (replica.endpoint_id, replica.revision))
    flavor_id = spec.flavor_id if spec is not None else endpoint.flavor_id
    deploy = spec.deploy if spec is not None else endpoint.deploy
    gpu_num = deploy_from_json(deploy).gpu_num
    stored = FlavorRepository(session).get(flavor_id)
    if stored is not None:
        rate = fix_rate(
            replica_id=replica.replica_id,
            endpoint_id=endpoint.service_id,
            user_id=endpoint.user_id,
            flavor=stored.flavor,
            gpu_num=gpu_num,
            payment_type=endpoint.payment_type,
        )
    else:
        rate = ReplicaRate(
            replica.replica_id,
            endpoint.service_id,
            endpoint.user_id,
            flavor_id,
            gpu_num,
            endpoint.payment_type,
            Decimal(0),
        )
    session.add(
        ReplicaRateRow(
            replica_id=rate.replica_id,
            endpoint_id=rate.endpoint_id,
            user_id=rate.user_id,
            flavor_id=rate.flavor_id,
            gpu_num=rate.gpu_num,
            currency=rate.currency,
            price_per_hour=rate.price_per_hour,
            placed_at=placed_at,
            billed_until=None,
            settled=False,
        )
    )


def stored_rate(row: ReplicaRateRow) -> ReplicaRate:
    return ReplicaRate(
        row.replica_id,
        row.endpoint_id,
        row.user_id,
        row.flavor_id,
        row.gpu_num,
        row.currency,
        row.price_per_hour,
    )


def billed_until(session: Session, replica_id: str) -> datetime | None:
    """How far the replica's usage is closed into records (None: not at all, or it has
    no rate). An event recorded for it must not be dated before this."""
    row = session.get(ReplicaRateRow, replica_id)
    return row.billed_until if row is not None else None
