"""Endpoints as the store keeps them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from moorage.errors import Conflict, ErrorCode
from moorage.models.autoscaling import ScaleMetric, ScalePolicy
from moorage.models.endpoints import (
    DeploySpec,
    DesiredState,
    Endpoint,
    GatewaySettings,
    deploy_from_json,
    deploy_to_json,
)
from moorage.routing.table import EndpointRoute
from moorage.store.tables import EndpointRevisionRow, EndpointRow


def scale_policy_to_json(policy: ScalePolicy | None) -> dict[str, Any] | None:
    return None if policy is None else dataclasses.asdict(policy)


def scale_policy_from_json(data: Mapping[str, Any] | None) -> ScalePolicy | None:
    """The stored policy; keys a later version no longer knows are left out."""
    if data is None:
        return None
    known = {f.name for f in dataclasses.fields(ScalePolicy)}
    fields = {k: v for k, v in data.items() if k in known}
    if "metric" in fields:
        fields["metric"] = ScaleMetric(fields["metric"])
    return ScalePolicy(**fields)


def _endpoint(row: EndpointRow) -> Endpoint:
    return Endpoint(
        service_id=row.service_id,
        user_id=row.user_id,
        name=row.name,
        description=row.description,
        payment_type=row.payment_type,
        flavor_id=row.flavor_id,
        scale_type=row.scale_type,
        target_instance_number=row.target_instance_number,
        deploy=deploy_from_json(row.deploy),
        revision=row.revision,
        desired_state=DesiredState(row.desired_state),
        service_type=row.service_type,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
        rollout_note=row.rollout_note,
        gateway=GatewaySettings(**(row.gateway or {})),
        stop_reason=row.stop_reason,
        scale_policy=scale_policy_from_json(row.scale_policy),
        scaled_at=row.scaled_at,
    )


@dataclass(frozen=True)
class IdleEndpoint:
    """A live endpoint that wants no replicas, as much of it as its route entry needs."""

    service_id: str
    user_id: str
    desired_state: DesiredState
    gateway: GatewaySettings
    # Scaled automatically: requests are held while a replica starts (from zero).
    scales_from_zero: bool = False

    def route(self, tokens: Mapping[str, frozenset[str]]) -> EndpointRoute:
        """Its route entry: without replicas, so that the gateway says "stopped" (503)
        rather than "no such endpoint" (404), or holds requests while one starts."""
        return EndpointRoute(
            service_id=self.service_id,
            owner_token_hashes=tokens.get(self.user_id, frozenset()),
            replicas=(),
            status_hint=self.desired_state,
            admission=self.gateway,
            scales_from_zero=self.scales_from_zero and self.desired_state is DesiredState.RUNNING,
        )


@dataclass(frozen=True)
class IdleChange:
    """An endpoint written since some time: its idle entry, or None if it has none now."""

    service_id: str
    updated_at: datetime
    idle: IdleEndpoint | None


def _idle(
    service_id: str,
    user_id: str,
    state: str,
    gateway: dict[str, object] | None,
    policy: dict[str, object] | None,
) -> IdleEndpoint:
    return IdleEndpoint(
        service_id,
        user_id,
        DesiredState(state),
        GatewaySettings(**(gateway or {})),  # type: ignore[arg-type]
        scales_from_zero=policy is not None,
    )


def _wanting_replicas() -> tuple[ColumnElement[bool], ...]:
    return (
        EndpointRow.deleted_at.is_(None),
        EndpointRow.desired_state == DesiredState.RUNNING.value,
        EndpointRow.target_instance_number > 0,
    )


def _row_fields(endpoint: Endpoint) -> dict[str, object]:
    return {
        "user_id": endpoint.user_id,
        "name": endpoint.name,
        "description": endpoint.description,
        "payment_type": endpoint.payment_type,
        "flavor_id": endpoint.flavor_id,
        "scale_type": endpoint.scale_type,
        "target_instance_number": endpoint.target_instance_number,
        "deploy": deploy_to_json(endpoint.deploy),
        "revision": endpoint.revision,
        "desired_state": endpoint.desired_state.value,
        "service_type": endpoint.service_type,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
        "deleted_at": endpoint.deleted_at,
        "rollout_note": endpoint.rollout_note,
        "gateway": dataclasses.asdict(endpoint.gateway),
        "stop_reason": endpoint.stop_reason,
        "scale_policy": scale_policy_to_json(endpoint.scale_policy),
        "scaled_at": endpoint.scaled_at,
        "reserved_instances": endpoint.reserved_instances,
    }


class EndpointRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, endpoint: Endpoint) -> Endpoint:
        row = EndpointRow(service_id=endpoint.service_id, **_row_fields(endpoint))
        self._write_or_conflict(endpoint.name, lambda: self.session.add(row))
        return endpoint

    def save(self, endpoint: Endpoint) -> Endpoint:
        row = self.session.get(EndpointRow, endpoint.service_id)
        if row is None:
            raise KeyError(endpoint.service_id)

        def update() -> None:
            for key, value in _row_fields(endpoint).items():
                setattr(row, key, value)

        self._write_or_conflict(endpoint.name, update)
        return endpoint

    def _write_or_conflict(self, name: str, write: Callable[[], None]) -> None:
        """Runs ``write`` in a savepoint, so a taken name rolls back only this write."""
        try:
            with self.session.begin_nested():
                write()
                self.session.flush()
        except IntegrityError as exc:
            raise Conflict(
                f"name: you already have an endpoint named {name!r}; "
                "pick another name or delete that endpoint first",
                code=ErrorCode.NAME_IN_USE,
            ) from exc

    def get_live(self, service_id: str) -> Endpoint | None:
        row = self.session.get(EndpointRow, service_id)
        if row is None or row.deleted_at is not None:
            return None
        return _endpoint(row)

    def name_in_use(self, user_id: str, name: str, *, except_id: str | None = None) -> bool:
        query = select(EndpointRow.service_id).where(
            EndpointRow.user_id == user_id,
            EndpointRow.name == name,
            EndpointRow.deleted_at.is_(None),
        )
        if except_id is not None:
            query = query.where(EndpointRow.service_id != except_id)
        return self.session.scalars(query).first() is not None

    def list_for_user(
        self, user_id: str, *, offset: int, limit: int
    ) -> tuple[Sequence[Endpoint], int]:
        live = (EndpointRow.user_id == user_id, EndpointRow.deleted_at.is_(None))
        total = self.session.scalar(select(func.count()).select_from(EndpointRow).where(*live)) or 0
        # The page's ids first, from the index alone (skipped rows are never read),
        # then those rows.
        newest_first = (EndpointRow.created_at.desc(), EndpointRow.service_id)
        page = (
            select(EndpointRow.service_id)
            .where(*live)
            .order_by(*newest_first)
            .offset(offset)
            .limit(limit)
        )
        rows = self.session.scalars(
            select(EndpointRow)
            .where(EndpointRow.service_id.in_(page.scalar_subquery()))
            .order_by(*newest_first)
        )
        return [_endpoint(r) for r in rows], total

    def list_all_live(self) -> Sequence[Endpoint]:
        rows = self.session.scalars(select(EndpointRow).where(EndpointRow.deleted_at.is_(None)))
        return [_endpoint(r) for r in rows]

    def list_wanting_replicas(self) -> Sequence[Endpoint]:
        """Live endpoints that want replicas running: what the controller plans each pass.
        Stopped ones (and those scaled to 0) are left out, so a pass costs nothing per
        stopped endpoint (their route entries come from ``list_idle``)."""
        rows = self.session.scalars(select(EndpointRow).where(*_wanting_replicas()))
        return [_endpoint(r) for r in rows]

    def list_autoscaled(self) -> Sequence[Endpoint]:
        """Running endpoints whose count the autoscaler sets, at zero replicas too."""
        rows = self.session.scalars(
            select(EndpointRow).where(
                EndpointRow.deleted_at.is_(None),
                EndpointRow.desired_state == DesiredState.RUNNING.value,
                EndpointRow.scale_policy.is_not(None),
            )
        )
        return [_endpoint(r) for r in rows]

    def set_autoscaled_count(
        self, service_id: str, *, previous: int, desired: int, at: datetime
    ) -> bool:
        """Sets an automatic endpoint's count, only if it still runs automatically at
        ``previous``: a user's write (switched to manual, stopped, deleted) committed
        meanwhile wins, and the autoscaler decides again from what it then reads."""
        result = self.session.execute(
            update(EndpointRow)
            .where(
                EndpointRow.service_id == service_id,
                EndpointRow.target_instance_number == previous,
                EndpointRow.scale_policy.is_not(None),
                EndpointRow.deleted_at.is_(None),
                EndpointRow.desired_state == DesiredState.RUNNING.value,
            )
            .values(target_instance_number=desired, scaled_at=at, updated_at=at)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    def list_idle(self) -> Sequence[IdleEndpoint]:
        """Live endpoints that want no replicas: only what their route entry needs."""
        rows = self.session.execute(
            select(
                EndpointRow.service_id,
                EndpointRow.user_id,
                EndpointRow.desired_state,
                EndpointRow.gateway,
                EndpointRow.scale_policy,
            ).where(EndpointRow.deleted_at.is_(None), not_(and_(*_wanting_replicas())))
        )
        return [
            _idle(service_id, user_id, state, gateway, policy)
            for service_id, user_id, state, gateway, policy in rows
        ]

    def idle_changes(self, since: datetime) -> Sequence[IdleChange]:
        """Endpoints written at or after ``since`` (by ``updated_at``, indexed), each with
        its idle entry, or None when it now wants replicas or is deleted: what keeps
        the idle entries current after a write without reloading every one."""
        rows = self.session.execute(
            select(
                EndpointRow.service_id,
                EndpointRow.user_id,
                EndpointRow.desired_state,
                EndpointRow.target_instance_number,
                EndpointRow.deleted_at,
                EndpointRow.gateway,
                EndpointRow.scale_policy,
                EndpointRow.updated_at,
            ).where(EndpointRow.updated_at >= since)
        )
        changes = []
        for service_id, user_id, state, target, deleted_at, gateway, policy, updated_at in rows:
            idle = deleted_at is None and (state != DesiredState.RUNNING.value or target <= 0)
            entry = _idle(service_id, user_id, state, gateway, policy) if idle else None
            changes.append(IdleChange(service_id, updated_at, entry))
        return changes

    def last_update(self) -> datetime | None:
        """The newest ``updated_at`` of any endpoint (indexed)."""
        return self.session.scalar(select(func.max(EndpointRow.updated_at)))

    def get_many(self, service_ids: Sequence[str]) -> Sequence[Endpoint]:
        if not service_ids:
            return []
        rows = self.session.scalars(
            select(EndpointRow).where(EndpointRow.service_id.in_(service_ids))
        )
        return [_endpoint(r) for r in rows]

    def add_revision(self, endpoint: Endpoint) -> None:
        """Records the spec of the endpoint's current revision."""
        self.session.add(
            EndpointRevisionRow(
                endpoint_id=endpoint.service_id,
                revision=endpoint.revision,
                flavor_id=endpoint.flavor_id,
                deploy=deploy_to_json(endpoint.deploy),
                created_at=endpoint.updated_at,
            )
        )
        self.session.flush()

    def latest_revision(self, service_id: str) -> int:
        query = select(func.max(EndpointRevisionRow.revision)).where(
            EndpointRevisionRow.endpoint_id == service_id
        )
        return int(self.session.scalar(query) or 0)

    def revision(self, service_id: str, revision: int) -> tuple[str, DeploySpec] | None:
        """The flavor and spec an endpoint ran at ``revision``."""
        row = self.session.get(EndpointRevisionRow, (service_id, revision))
        return (row.flavor_id, deploy_from_json(row.deploy)) if row else None

    def held_instances(self, flavor_id: str, *, except_id: str | None = None) -> int:
        """Instances the running, undeleted endpoints on a flavor have reserved (an
        automatic endpoint its maximum)."""
        query = select(func.coalesce(func.sum(EndpointRow.reserved_instances), 0)).where(
            EndpointRow.flavor_id == flavor_id,
            EndpointRow.deleted_at.is_(None),
            EndpointRow.desired_state == DesiredState.RUNNING.value,
        )
        if except_id is not None:
            query = query.where(EndpointRow.service_id != except_id)
        return int(self.session.scalar(query) or 0)
