"""Per-user quotas and the usage they are checked against, as the store keeps them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from moorage.models.endpoints import DesiredState
from moorage.store.gpus import gpu_num_of
from moorage.store.tables import EndpointRow, GpuAllocationRow, UserQuotaRow, UserRow

LIMIT_COLUMNS = (
    "endpoints",
    "replicas",
    "flavor_share",
    "command_bytes",
    "env_vars",
    "env_bytes",
    "name_chars",
    "description_chars",
    "log_followers",
    "secrets",
)


class QuotaRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def lock_user(self, user_id: str) -> None:
        """Serialises one user's quota-checked writes (PostgreSQL row lock; SQLite
        already runs one writer at a time), so two concurrent creates cannot both fit
        in the last slot."""
        self.session.execute(
            select(UserRow.user_id).where(UserRow.user_id == user_id).with_for_update()
        )

    def overrides(self, user_id: str) -> dict[str, int | float]:
        """The limits set for this user alone; the others are the server's defaults."""
        row = self.session.get(UserQuotaRow, user_id)
        if row is None:
            return {}
        values = {name: getattr(row, name) for name in LIMIT_COLUMNS}
        return {name: value for name, value in values.items() if value is not None}

    def set(self, user_id: str, changes: Mapping[str, int | float | None], now: datetime) -> None:
        """Sets the named limits; ``None`` goes back to the default."""
        unknown = set(changes) - set(LIMIT_COLUMNS)
        if unknown:
            raise KeyError(", ".join(sorted(unknown)))
        row = self.session.get(UserQuotaRow, user_id)
        if row is None:
            row = UserQuotaRow(user_id=user_id, updated_at=now)
            self.session.add(row)
        for name, value in changes.items():
            setattr(row, name, value)
        row.updated_at = now
        self.session.flush()

    def endpoint_count(self, user_id: str) -> int:
        """The user's endpoints that are not deleted, running or stopped."""
        query = select(func.count()).select_from(EndpointRow).where(*_live(user_id))
        return int(self.session.scalar(query) or 0)

    def running_replicas(self, user_id: str, flavor_id: str | None = None) -> int:
        """Replicas the user's running endpoints reserve (an automatic one its maximum),
        on one flavor or on all."""
        query = select(func.coalesce(func.sum(EndpointRow.reserved_instances), 0)).where(
            *_live(user_id), EndpointRow.desired_state == DesiredState.RUNNING.value
        )
        if flavor_id is not None:
            query = query.where(EndpointRow.flavor_id == flavor_id)
        return int(self.session.scalar(query) or 0)

    def running_gpus(self, user_id: str, flavor_id: str) -> int:
        """GPUs the user's running endpoints on a GPU flavor ask for: each endpoint's
        replicas times its ``gpu_num``."""
        return self.gpus_by_flavor(user_id, flavor_id).get(flavor_id, 0)

    def gpus_by_flavor(self, user_id: str, flavor_id: str | None = None) -> dict[str, int]:
        """GPUs (replicas x ``gpu_num``) the user's running endpoints ask for, by flavor,
        on one flavor or on all; flavors they ask none of are left out. Summed here:
        ``gpu_num`` lives in the deploy document, which the two stores read differently
        in SQL."""
        query = select(
            EndpointRow.flavor_id, EndpointRow.reserved_instances, EndpointRow.deploy
        ).where(*_live(user_id), EndpointRow.desired_state == DesiredState.RUNNING.value)
        if flavor_id is not None:
            query = query.where(EndpointRow.flavor_id == flavor_id)
        totals: dict[str, int] = {}
        for flavor, target, deploy in self.session.execute(query):
            gpus = target * gpu_num_of(deploy)
            if gpus > 0:
                totals[flavor] = totals.get(flavor, 0) + gpus
        return totals

    def held_gpus(self, user_id: str, flavor_id: str) -> int:
        """GPUs of a flavor allocated to the user's replicas now, whatever their
        endpoints ask for: a stopping replica holds its GPUs until it has stopped."""
        query = (
            select(func.count())
            .select_from(GpuAllocationRow)
            .join(EndpointRow, EndpointRow.service_id == GpuAllocationRow.endpoint_id)
            .where(EndpointRow.user_id == user_id, GpuAllocationRow.flavor_id == flavor_id)
        )
        return int(self.session.execute(query).scalar_one())

    def replicas_by_flavor(self, user_id: str) -> dict[str, int]:
        query = (
            select(EndpointRow.flavor_id, func.sum(EndpointRow.reserved_instances))
            .where(*_live(user_id), EndpointRow.desired_state == DesiredState.RUNNING.value)
            .group_by(EndpointRow.flavor_id)
        )
        return {flavor_id: int(total) for flavor_id, total in self.session.execute(query)}


def _live(user_id: str) -> tuple[ColumnElement[bool], ...]:
    return (EndpointRow.user_id == user_id, EndpointRow.deleted_at.is_(None))
