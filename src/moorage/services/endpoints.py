"""Endpoint operations: create, read, update, stop/start, delete.

Every write validates against the flavor and capacity first and changes
nothing when a check fails; the controller is woken after each commit.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cachetools import TTLCache
from sqlalchemy.orm import Session

from moorage import lifecycle, refusals
from moorage.clock import Clock
from moorage.errors import InvalidField
from moorage.models import words
from moorage.models.accounts import User
from moorage.models.autoscaling import ScalePolicy
from moorage.models.endpoints import DeploySpec, DesiredState, Endpoint
from moorage.models.events import EndpointChange, EventPage, changes
from moorage.models.flavors import Flavor, StoredFlavor
from moorage.models.placement import most_replicas
from moorage.models.replicas import Replica
from moorage.models.requests import (
    CreateEndpointRequest,
    ResourceMetadataPatch,
    ScalePolicyIn,
    UpdateEndpointRequest,
)
from moorage.models.status import DerivedStatus, StatusPolicy, derive_status
from moorage.services.budgets import check_budget
from moorage.services.quotas import QuotaService
from moorage.services.secrets import check_named
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.events import EventRepository
from moorage.store.flavors import FlavorRepository
from moorage.store.replicas import ReplicaRepository
from moorage.wire import new_id

MAX_PAGE_SIZE = 100
FLAVOR_CACHE_S = 10.0
# Far past any user's endpoints, and (page - 1) * page_size stays a 64-bit integer.
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class EndpointView:
    """An endpoint with what a response shows beside it."""

    endpoint: Endpoint
    flavor: StoredFlavor | None
    replicas: Sequence[Replica]
    status: DerivedStatus


@dataclass(frozen=True)
class EndpointPage:
    items: Sequence[EndpointView]
    total: int
    page: int
    page_size: int


class EndpointService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        status_policy: StatusPolicy,
        *,
        max_instances: int,
        on_change: Callable[[], None] = lambda: None,
        quotas: QuotaService | None = None,
        launch_guard: Callable[[User, DeploySpec], None] = lambda _user, _deploy: None,
    ) -> None:
        self.db = db
        # Raises when this user's replicas cannot run here (no sandbox on the process
        # runtime, no command for it to run, GPUs it cannot give this user): refused at
        # the API, after the flavor's own checks and before anything is written or a GPU
        # allocated, not left failing (and holding GPUs) in the controller.
        self.launch_guard = launch_guard
        self.clock = clock
        self.status_policy = status_policy
        self.max_instances = max_instances
        self.on_change = on_change
        self.quotas = quotas
        self._flavors: TTLCache[str, StoredFlavor | None] = TTLCache(
            1024, FLAVOR_CACHE_S, timer=lambda: clock.now().timestamp()
        )
        self._flavors_lock = threading.Lock()  # reads run in worker threads

    # -- reads ---------------------------------------------------------------

    def get(self, user: User, service_id: str) -> EndpointView:
        with self.db.session() as session:
            return self._view(session, self._owned(session, user, service_id))

    def list(self, user: User, *, page: int, page_size: int) -> EndpointPage:
        _check_page(page, page_size)
        with self.db.session() as session:
            endpoints, total = EndpointRepository(session).list_for_user(
                user.user_id, offset=(page - 1) * page_size, limit=page_size
            )
            # One query for the whole page's replicas and one per flavor, not two per
            # endpoint.
            replicas: dict[str, list[Replica]] = {e.service_id: [] for e in endpoints}
            for replica in ReplicaRepository(session).live(replicas):
                replicas[replica.endpoint_id].append(replica)
            by_id = {f: self._flavor(session, f) for f in {e.flavor_id for e in endpoints}}
            views = [
                self._assemble(e, by_id[e.flavor_id], replicas[e.service_id]) for e in endpoints
            ]
        return EndpointPage(views, total, page, page_size)

    def events(self, user: User, service_id: str, *, page: int, page_size: int) -> EventPage:
        """What happened to the user's endpoint, newest first (see ``models.events``)."""
        _check_page(page, page_size)
        with self.db.session() as session:
            self._owned(session, user, service_id)
            items, total = EventRepository(session).page(
                service_id, offset=(page - 1) * page_size, limit=page_size
            )
        return EventPage(items, total, page, page_size)

    # -- writes --------------------------------------------------------------

    def create(self, user: User, request: CreateEndpointRequest) -> EndpointView:
        now = self.clock.now()
        resource, deploy = request.resource_metadata, request.deploy_metadata
        policy = None
        target = resource.target_instance_number
        if resource.scale_type == "auto":
            policy = (resource.scale_policy or ScalePolicyIn()).to_policy()
            target = _starting_count(target, policy)
        endpoint = Endpoint(
            service_id=new_id(),
            user_id=user.user_id,
            name=request.name,
            description=request.description,
            payment_type=request.payment_type,
            flavor_id=resource.flavor_id,
            scale_type=resource.scale_type,
            target_instance_number=target,
            scale_policy=policy,
            deploy=deploy.to_spec(),
            gateway=request.gateway_metadata.to_settings(),
            revision=1,
            desired_state=DesiredState.RUNNING,
            service_type="normal",
            created_at=now,
            updated_at=now,
        )
        _check_deploy(endpoint.deploy)
        with self.db.checked_session() as session:
            AccountRepository(session).lock_user(user.user_id)
            self._check_fits(session, endpoint)
            self.launch_guard(user, endpoint.deploy)
            check_named(session, user.user_id, endpoint.deploy)
            self._check_quotas(session, user, endpoint, None)
            check_budget(session, user.user_id, endpoint.payment_type, now)
            EndpointRepository(session).add(endpoint)
            EndpointRepository(session).add_revision(endpoint)
            done = _record_changes(session, None, endpoint)
            view = self._view(session, endpoint)
        _log_changes(done, endpoint)
        self.on_change()
        return view

    def update(self, user: User, service_id: str, request: UpdateEndpointRequest) -> EndpointView:
        with self.db.checked_session() as session:
            AccountRepository(session).lock_user(user.user_id)
            current = self._owned(session, user, service_id)
            updated = _apply_patch(current, request)
            done: list[EndpointChange] = []
            if updated != current:
                repository = EndpointRepository(session)
                # A change of the user's own ends the tale of an earlier rollback: its
                # note leaves status_info (the events keep it).
                updated = dataclasses.replace(
                    updated, updated_at=self.clock.now(), rollout_note=None
                )
                new_revision = (
                    updated.deploy != current.deploy or updated.flavor_id != current.flavor_id
                )
                if new_revision:
                    updated = dataclasses.replace(
                        updated,
                        revision=repository.latest_revision(service_id) + 1,
                    )
                _check_deploy(updated.deploy)
                _check_currency_change(current, updated)
                self._check_fits(session, updated)
                self.launch_guard(user, updated.deploy)
                if updated.deploy.secrets != current.deploy.secrets:
                    check_named(session, user.user_id, updated.deploy)
                self._check_quotas(session, user, updated, current)
                if _bills_more(current, updated, new_revision):
                    check_budget(session, user.user_id, updated.payment_type, self.clock.now())
                repository.save(updated)
                if new_revision:
                    repository.add_revision(updated)
                done = _record_changes(session, current, updated)
            view = self._view(session, updated)
        _log_changes(done, updated)
        self.on_change()
        return view

    def set_running(self, user: User, service_id: str, running: bool) -> EndpointView:
        with self.db.checked_session() as session:
            AccountRepository(session).lock_user(user.user_id)
            current = self._owned(session, user, service_id)
            wanted = DesiredState.RUNNING if running else DesiredState.STOPPED
            updated = current
            done: list[EndpointChange] = []
            if current.desired_state is not wanted:
                now = self.clock.now()
                updated = dataclasses.replace(
                    current, desired_state=wanted, updated_at=now, rollout_note=None
                )
                if running:  # the user's own start: whatever stopped it no longer says why
                    updated = dataclasses.replace(updated, stop_reason=None)
                    self._check_fits(session, updated)
                    self.launch_guard(user, updated.deploy)
                    self._check_quotas(session, user, updated, current)
                    check_budget(session, user.user_id, updated.payment_type, now)
                EndpointRepository(session).save(updated)
                done = _record_changes(session, current, updated)
            view = self._view(session, updated)
        _log_changes(done, updated)
        self.on_change()
        return view

    def delete(self, user: User, service_id: str) -> EndpointView:
        with self.db.session() as session:
            current = self._owned(session, user, service_id)
            now = self.clock.now()
            deleted = dataclasses.replace(current, deleted_at=now, updated_at=now)
            EndpointRepository(session).save(deleted)
            done = _record_changes(session, current, deleted)
            view = self._view(session, deleted)
        _log_changes(done, deleted)
        self.on_change()
        return view

    # -- helpers -------------------------------------------------------------

    def _owned(self, session: Session, user: User, service_id: str) -> Endpoint:
        endpoint = EndpointRepository(session).get_live(service_id)
        # Another user's endpoint is reported exactly like a missing one, after the same
        # single lookup, so neither the answer nor its timing tells them apart.
        if endpoint is None or endpoint.user_id != user.user_id:
            raise refusals.endpoint_not_found(service_id)
        return endpoint

    def _check_fits(self, session: Session, endpoint: Endpoint) -> None:
        flavor = FlavorRepository(session).get(endpoint.flavor_id, for_update=True)
        if flavor is None or flavor.deleted_at is not None:
            raise InvalidField(
                "resource_metadata.flavor_id",
                f"no flavor {endpoint.flavor_id!r}; GET /v1/inference-service/flavor lists them",
            )
        _check_priced(flavor.flavor, endpoint.payment_type)
        if endpoint.deploy.gpu_num > flavor.flavor.node_max_gpu:
            raise InvalidField(
                "deploy_metadata.gpu_num",
                f"must be at most {flavor.flavor.node_max_gpu} on flavor "
                f"{flavor.flavor.display_name} (node_max_gpu), got {endpoint.deploy.gpu_num}",
            )
        if flavor.flavor.has_gpus:
            self._check_gpus(flavor.flavor, endpoint)
            return
        # Asking for more than the flavor can ever hold is the caller's mistake (400);
        # asking for what it holds while other endpoints hold it is the operator's
        # shortage, which passes (503: see docs/api.md, "Running out of capacity").
        count = endpoint.reserved_instances
        capacity = flavor.flavor.capacity
        most = min(self.max_instances, capacity) if capacity else self.max_instances
        if not 1 <= count <= most:
            hint = (
                f" (flavor {flavor.flavor.display_name} holds {capacity})"
                if most == capacity
                else ""
            )
            raise InvalidField(
                _count_field(endpoint),
                f"must be between 1 and {most}{hint}, got {count}; "
                + (
                    "an automatic endpoint reserves its max_instances"
                    if endpoint.autoscaled
                    else "stop it to run no replica (POST .../stop; `moorage endpoints stop`)"
                ),
            )
        held = EndpointRepository(session).held_instances(
            endpoint.flavor_id, except_id=endpoint.service_id
        )
        free = max(0, capacity - held)
        if count > free:
            raise refusals.insufficient_capacity(
                flavor.flavor.display_name, count, free, capacity, _count_field(endpoint)
            )

    def _check_gpus(self, flavor: Flavor, endpoint: Endpoint) -> None:
        """A GPU flavor refuses what its GPUs can never hold (400, naming the numbers);
        what they hold once other replicas free them is accepted, and its replicas
        wait for GPUs ("waiting for capacity", oldest first: docs/gpus.md)."""
        gpu_num, count = endpoint.deploy.gpu_num, endpoint.reserved_instances
        if gpu_num < 1:
            raise InvalidField(
                "deploy_metadata.gpu_num",
                f"must be between 1 and {flavor.node_max_gpu} on flavor {flavor.display_name}, "
                f"whose replicas each run on their own GPUs, got {gpu_num}",
            )
        fits = most_replicas(flavor.gpus, gpu_num)
        most = min(self.max_instances, fits)
        if not 1 <= count <= most:
            raise InvalidField(
                _count_field(endpoint),
                f"must be between 1 and {most}, got {count}: flavor {flavor.display_name} has "
                f"{words.count(len(flavor.gpus), 'GPU')} (at most {flavor.node_max_gpu} on one "
                f"node), which {'holds' if len(flavor.gpus) == 1 else 'hold'} "
                f"{words.count(fits, 'replica')} of gpu_num {gpu_num}; "
                f"{count} would need {count * gpu_num}. Ask for fewer replicas or a smaller "
                "gpu_num",
            )

    def _check_quotas(
        self, session: Session, user: User, updated: Endpoint, current: Endpoint | None
    ) -> None:
        if self.quotas is not None:
            self.quotas.check(session, user, updated, current)

    def _view(self, session: Session, endpoint: Endpoint) -> EndpointView:
        flavor = self._flavor(session, endpoint.flavor_id)
        replicas = (
            [] if endpoint.is_deleted else ReplicaRepository(session).live([endpoint.service_id])
        )
        return self._assemble(endpoint, flavor, replicas)

    def _flavor(self, session: Session, flavor_id: str) -> StoredFlavor | None:
        """A flavor as responses show it, read from the store at most every
        FLAVOR_CACHE_S (flavors change only when a server starts with a new file)."""
        with self._flavors_lock:
            if flavor_id in self._flavors:
                return self._flavors[flavor_id]
        flavor = FlavorRepository(session).get(flavor_id)
        with self._flavors_lock:
            self._flavors[flavor_id] = flavor
        return flavor

    def _assemble(
        self, endpoint: Endpoint, flavor: StoredFlavor | None, replicas: Sequence[Replica]
    ) -> EndpointView:
        status = derive_status(endpoint, replicas, self.status_policy, self.clock.now())
        return EndpointView(endpoint, flavor, replicas, status)


def _record_changes(
    session: Session, before: Endpoint | None, after: Endpoint
) -> list[EndpointChange]:
    """Records what the write changed, in its transaction; logged once it commits."""
    done = changes(before, after, after.updated_at)
    for change in done:
        EventRepository(session).record(change)
    return done


def _log_changes(done: Sequence[EndpointChange], endpoint: Endpoint) -> None:
    for change in done:
        lifecycle.endpoint(change, endpoint.name)


def _check_priced(flavor: Flavor, payment_type: str) -> None:
    """A flavor priced in some currencies is sold in those only: a currency it names no
    price in would run its replicas (GPUs included) for nothing. A flavor priced in
    none is the operator's gift, in any currency."""
    priced = flavor.priced_in()
    if priced and payment_type not in priced:
        raise InvalidField(
            "payment_type",
            f"flavor {flavor.display_name} has no price in {payment_type}; it is sold in "
            f"{' or '.join(priced)}: use one of those",
        )


def _check_currency_change(current: Endpoint, updated: Endpoint) -> None:
    """Running replicas are billed in the currency fixed when they were placed, so a
    running endpoint keeps its ``payment_type``: changed in place, it would show (and
    be held to the spending limit of) a currency its replicas are not billed in."""
    if (
        updated.payment_type != current.payment_type
        and current.desired_state is DesiredState.RUNNING
    ):
        raise InvalidField(
            "payment_type",
            f"cannot change while the endpoint runs: its replicas are billed in "
            f"{current.payment_type}, at the rate fixed when each was placed; stop it "
            "(POST .../stop), change payment_type, then start it",
        )


def _bills_more(current: Endpoint, updated: Endpoint, new_revision: bool) -> bool:
    """Whether an update of a running endpoint places replicas billed anew: more of
    them, or a new revision (another flavor, more GPUs, any rollout), whose replicas
    are placed at today's rates. A reached spending limit refuses it as it refuses a
    create (its currency cannot change while it runs)."""
    return updated.desired_state is DesiredState.RUNNING and (
        updated.target_instance_number > current.target_instance_number
        or updated.reserved_instances > current.reserved_instances
        or new_revision
    )


def _check_deploy(deploy: DeploySpec) -> None:
    """What no single field says: ``args`` go to the image's entrypoint, which a
    ``command`` replaces."""
    if deploy.command is not None and deploy.args:
        raise InvalidField(
            "deploy_metadata.args",
            "passes arguments to the image's own entrypoint, which deploy_metadata.command "
            "replaces; put them in the command, or leave the command out (null in a PUT) "
            "to run the image as built",
        )


def _check_page(page: int, page_size: int) -> None:
    if not 1 <= page <= MAX_PAGE:
        raise InvalidField("page", f"must be between 1 and {MAX_PAGE}, got {page}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidField("page_size", f"must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")


def _apply_patch(current: Endpoint, request: UpdateEndpointRequest) -> Endpoint:
    changes: dict[str, object] = {
        k: v
        for k, v in {
            "name": request.name,
            "description": request.description,
            "payment_type": request.payment_type,
        }.items()
        if v is not None
    }
    if request.resource_metadata is not None:
        changes.update(_scaling_patch(current, request.resource_metadata))
    if request.deploy_metadata is not None:
        changes["deploy"] = request.deploy_metadata.apply_to(current.deploy)
    if request.gateway_metadata is not None:
        changes["gateway"] = request.gateway_metadata.apply_to(current.gateway)
    return dataclasses.replace(current, **changes)  # type: ignore[arg-type]


def _count_field(endpoint: Endpoint) -> str:
    """The field that sets how many replicas an endpoint reserves."""
    if endpoint.autoscaled:
        return "resource_metadata.scale_policy.max_instances"
    return "resource_metadata.target_instance_number"


def _starting_count(asked: int, policy: ScalePolicy) -> int:
    """An automatic endpoint's first count: what was asked, within the policy's bounds,
    and at least one, so that its owner sees it start (it may scale to zero later)."""
    return min(max(asked, policy.min_instances, 1), policy.max_instances)


def _scaling_patch(current: Endpoint, patch: ResourceMetadataPatch) -> dict[str, object]:
    """What a PUT's resource_metadata changes: the flavor, and manual or automatic
    scaling. While automatic, the autoscaler owns target_instance_number: a PUT that
    sets it to something else is refused, naming what to change instead."""
    changes: dict[str, object] = {}
    if patch.flavor_id is not None:
        changes["flavor_id"] = patch.flavor_id
    scale_type = patch.scale_type or current.scale_type
    changes["scale_type"] = scale_type
    if scale_type == "manual":
        if patch.scale_policy is not None:
            raise InvalidField(
                "resource_metadata.scale_policy",
                'applies to scale_type "auto" only; set scale_type to "auto" or leave it out',
            )
        changes["scale_policy"] = None
        if patch.target_instance_number is not None:
            changes["target_instance_number"] = patch.target_instance_number
        elif current.target_instance_number < 1:  # left automatic scaling at zero
            changes["target_instance_number"] = 1
        return changes
    base = current.scale_policy or ScalePolicy()
    if patch.scale_policy is not None:
        minimum = patch.scale_policy.min_instances
        maximum = patch.scale_policy.max_instances
        minimum = base.min_instances if minimum is None else minimum
        maximum = base.max_instances if maximum is None else maximum
        if minimum > maximum:  # checked before the policy is built, which refuses it
            raise InvalidField(
                "resource_metadata.scale_policy.min_instances",
                f"would be {minimum}, above max_instances {maximum}; give a min_instances "
                "at most max_instances",
            )
    policy = patch.scale_policy.apply_to(base) if patch.scale_policy is not None else base
    asked = patch.target_instance_number
    if asked is not None and asked != current.target_instance_number and current.autoscaled:
        raise InvalidField(
            "resource_metadata.target_instance_number",
            f'is set by the autoscaler while scale_type is "auto" (now '
            f"{current.target_instance_number}); change scale_policy.min_instances or "
            'max_instances, or set scale_type to "manual" to choose the count',
        )
    if current.autoscaled:  # where the autoscaler has it, within the (new) bounds
        count = current.target_instance_number
    else:  # switched to automatic: from the count it runs (or the one asked)
        count = _starting_count(asked or current.target_instance_number, policy)
    changes["scale_policy"] = policy
    changes["target_instance_number"] = min(max(count, policy.min_instances), policy.max_instances)
    return changes
