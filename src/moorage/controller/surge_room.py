"""How much a rollout's surge may take: each owner's room under their quotas.

A rollout starts a new revision's replicas beside the old ones, so while it runs
the owner holds more than their endpoints ask for. The API checks quotas against
what endpoints ask for (``services/quotas.py``); this module bounds the surge, so
that ``flavor_share`` and ``replicas`` also hold while replicas are replaced: a
surge that does not fit is left out and the rollout replaces one replica at a time
(``plan.py``). What a user holds is what their live replicas hold, of every
revision, each counted in its own revision's flavor and units (GPUs on a GPU
flavor, replicas on a flavor of slots). The admin is not bound.

``surge_room`` is pure; ``load_surge_room`` gathers its inputs from the store, and
only for owners with a rollout under way, so a pass with none reads nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from moorage.models.endpoints import Endpoint
from moorage.models.quotas import FlavorUnits, Quotas, flavor_limit
from moorage.models.replicas import Replica
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.flavors import FlavorRepository
from moorage.store.quotas import QuotaRepository

__all__ = ["REPLICAS", "HeldReplica", "SurgeRoom", "load_surge_room", "surge_room"]

# The key of the replicas quota in ``SurgeRoom`` (flavor ids are never empty).
REPLICAS = ""

# (user_id, flavor_id or REPLICAS) -> what the user may still take, in the flavor's
# units (REPLICAS: replicas on any flavor); may be negative where a lowered quota is
# already exceeded. An owner with no entry is not bound (the admin).
SurgeRoom = Mapping[tuple[str, str], int]


@dataclass(frozen=True)
class HeldReplica:
    """One live replica as the quotas count it: its revision's flavor and gpu_num."""

    user_id: str
    flavor_id: str
    gpu_num: int


def surge_room(
    quotas: Mapping[str, Quotas],
    flavors: Mapping[str, FlavorUnits],
    held: Iterable[HeldReplica],
) -> dict[tuple[str, str], int]:
    """Each bound owner's room: their ``flavor_share`` of every flavor (rounded down,
    at least one, as the API counts it) less what their live replicas hold there, and
    their ``replicas`` quota less their live replicas. ``quotas`` holds the bound
    owners only."""
    used: dict[tuple[str, str], int] = {}
    for replica in held:
        if replica.user_id not in quotas:
            continue
        flavor = flavors.get(replica.flavor_id)
        units = flavor.of(1, replica.gpu_num) if flavor is not None else 1
        for key, amount in (
            ((replica.user_id, replica.flavor_id), units),
            ((replica.user_id, REPLICAS), 1),
        ):
            used[key] = used.get(key, 0) + amount
    room: dict[tuple[str, str], int] = {}
    for user_id, limits in quotas.items():
        room[(user_id, REPLICAS)] = limits.replicas - used.get((user_id, REPLICAS), 0)
        for flavor in flavors.values():
            limit = flavor_limit(flavor.capacity, limits.flavor_share)
            room[(user_id, flavor.flavor_id)] = limit - used.get((user_id, flavor.flavor_id), 0)
    return room


def rolling_owners(endpoints: Sequence[Endpoint], replicas: Sequence[Replica]) -> set[str]:
    """Owners of endpoints with live replicas of another revision: a rollout under way."""
    by_id = {e.service_id: e for e in endpoints}
    return {
        by_id[r.endpoint_id].user_id
        for r in replicas
        if r.endpoint_id in by_id and r.revision != by_id[r.endpoint_id].revision
    }


def load_surge_room(
    db: Database,
    defaults: Quotas,
    endpoints: Sequence[Endpoint],
    replicas: Sequence[Replica],
) -> dict[tuple[str, str], int]:
    """``surge_room`` for the owners with a rollout under way (no entry for others:
    with no replica of another revision, ``plan`` creates no surge)."""
    owners = rolling_owners(endpoints, replicas)
    if not owners:
        return {}
    by_id = {e.service_id: e for e in endpoints}
    with db.session() as session:
        accounts, quota_rows = AccountRepository(session), QuotaRepository(session)
        quotas: dict[str, Quotas] = {}
        for user_id in sorted(owners):
            user = accounts.user_by_id(user_id)
            if user is not None and not user.is_admin:
                quotas[user_id] = defaults.with_overrides(quota_rows.overrides(user_id))
        if not quotas:
            return {}
        flavors = {
            s.flavor.flavor_id: FlavorUnits(
                s.flavor.flavor_id, s.flavor.display_name, s.flavor.capacity, s.flavor.has_gpus
            )
            for s in FlavorRepository(session).list_live()
        }
        revisions = EndpointRepository(session)
        held: list[HeldReplica] = []
        for replica in replicas:
            endpoint = by_id.get(replica.endpoint_id)
            if endpoint is None or endpoint.user_id not in quotas:
                continue
            if replica.revision == endpoint.revision:
                flavor_id, gpu_num = endpoint.flavor_id, endpoint.deploy.gpu_num
            else:
                ran = revisions.revision(endpoint.service_id, replica.revision)
                flavor_id, gpu_num = (
                    (ran[0], ran[1].gpu_num)
                    if ran is not None
                    else (endpoint.flavor_id, endpoint.deploy.gpu_num)
                )
            held.append(HeldReplica(endpoint.user_id, flavor_id, gpu_num))
    return surge_room(quotas, flavors, held)
