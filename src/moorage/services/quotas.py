"""Per-user quotas: what one user may hold, so no user can starve the others.

The limits are the server's defaults (``MOORAGE_QUOTA_*``) with whatever the
admin set for one user on top. ``flavor_share`` counts what the flavor sells: GPUs
(replicas x gpu_num) on a flavor with a GPU inventory, where one replica may take
several, and replicas on a flavor of slots; ``replicas`` always counts replicas.
They are checked by the endpoint service inside the transaction that writes,
after the user's row is locked, so a refused request changes nothing and two
concurrent requests cannot both take the last slot. The admin (the operator) is
not bound by them. The arithmetic is in pure functions below; the service only
gathers the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session

from moorage.clock import Clock
from moorage.errors import ErrorCode, Forbidden, NotFound
from moorage.models.accounts import User
from moorage.models.endpoints import DesiredState, Endpoint
from moorage.models.quotas import FlavorUnits as FlavorUnits
from moorage.models.quotas import Quotas as Quotas
from moorage.models.quotas import flavor_limit as flavor_limit
from moorage.models.requests import QuotaPatch, env_bytes
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.flavors import FlavorRepository
from moorage.store.quotas import QuotaRepository

ASK_ADMIN = "ask the admin to raise your quota (PUT /v1/users/{user_id}/quota)"


@dataclass(frozen=True)
class Usage:
    """What a user holds that the quotas count: ``on_flavor`` is for one flavor, in
    its units (GPUs on a GPU flavor, replicas on a flavor of slots: ``FlavorUnits``)."""

    endpoints: int
    replicas: int
    on_flavor: int


@dataclass(frozen=True)
class Exceeded:
    """One quota a request would go past, with everything the message needs."""

    quota: str
    limit: int | float
    would_be: int
    what: str
    todo: str
    unit: str = ""

    def message(self, user_id: str) -> str:
        return (
            f"quota exceeded: {self.quota} is {self.limit}; "
            f"{self.what} {self.would_be}{self.unit}; "
            f"{self.todo}, or {ASK_ADMIN.format(user_id=user_id)}"
        )


def contribution(endpoint: Endpoint | None, flavor: FlavorUnits) -> Usage:
    """What one endpoint adds to its owner's usage (nothing once deleted)."""
    if endpoint is None or endpoint.is_deleted:
        return Usage(0, 0, 0)
    running = endpoint.desired_state is DesiredState.RUNNING
    replicas = endpoint.reserved_instances if running else 0
    if endpoint.flavor_id != flavor.flavor_id:
        return Usage(1, replicas, 0)
    return Usage(1, replicas, flavor.of(replicas, endpoint.deploy.gpu_num))


def usage_after(
    before: Usage, current: Endpoint | None, updated: Endpoint, flavor: FlavorUnits
) -> Usage:
    """The user's usage once ``current`` (None for a new endpoint) becomes ``updated``,
    whose flavor is ``flavor``."""
    old = contribution(current, flavor)
    new = contribution(updated, flavor)
    return Usage(
        before.endpoints - old.endpoints + new.endpoints,
        before.replicas - old.replicas + new.replicas,
        before.on_flavor - old.on_flavor + new.on_flavor,
    )


def usage_violations(
    quotas: Quotas, before: Usage, after: Usage, flavor: FlavorUnits
) -> list[Exceeded]:
    """Counts past their quota. Only growth is refused, so a user above a quota the
    admin lowered can still stop, scale down and delete."""
    found = []
    if after.endpoints > before.endpoints and after.endpoints > quotas.endpoints:
        found.append(
            Exceeded(
                "endpoints",
                quotas.endpoints,
                after.endpoints,
                "this would bring your endpoints (running or stopped) to",
                "delete an endpoint you no longer need",
            )
        )
    if after.replicas > before.replicas and after.replicas > quotas.replicas:
        found.append(
            Exceeded(
                "replicas",
                quotas.replicas,
                after.replicas,
                "this would bring the replicas of your running endpoints to",
                "stop or scale down another endpoint",
            )
        )
    share = flavor_limit(flavor.capacity, quotas.flavor_share)
    if after.on_flavor > before.on_flavor and after.on_flavor > share:
        counted = " (replicas x deploy_metadata.gpu_num)" if flavor.gpus else ""
        todo = "stop or scale down another of your endpoints on this flavor"
        if flavor.gpus:
            todo = (
                f"ask for fewer replicas or a smaller deploy_metadata.gpu_num, or {todo}, or "
                "wait until your replicas that are stopping have let go of their GPUs"
            )
        found.append(
            Exceeded(
                "flavor_share",
                quotas.flavor_share,
                after.on_flavor,
                f"you may hold {share} of the {flavor.capacity} {flavor.unit} of flavor "
                f"{flavor.name}{counted}; this would bring yours to",
                todo,
                f" {flavor.unit}",
            )
        )
    return found


def size_violations(quotas: Quotas, updated: Endpoint, current: Endpoint | None) -> list[Exceeded]:
    """Sizes past their quota, for the fields this request sets or changes (an
    unchanged field that a lowered quota now exceeds does not block other edits)."""
    deploy, old = updated.deploy, current.deploy if current else None
    env_changed = old is None or dict(deploy.env) != dict(old.env)
    checks: list[tuple[str, int, int, bool, str, str]] = [
        (
            "name_chars",
            quotas.name_chars,
            len(updated.name),
            current is None or updated.name != current.name,
            "name would have",
            " characters",
        ),
        (
            "description_chars",
            quotas.description_chars,
            len(updated.description),
            current is None or updated.description != current.description,
            "description would have",
            " characters",
        ),
        (
            "command_bytes",
            quotas.command_bytes,
            deploy.command_bytes,
            old is None or (deploy.command, deploy.args) != (old.command, old.args),
            "deploy_metadata.command and args would take",
            " bytes (UTF-8)",
        ),
        (
            "env_vars",
            quotas.env_vars,
            len(deploy.env),
            env_changed,
            "deploy_metadata.env would hold",
            " variables",
        ),
        (
            "env_bytes",
            quotas.env_bytes,
            env_bytes(dict(deploy.env)),
            env_changed,
            "deploy_metadata.env would take",
            " bytes (as NAME=value)",
        ),
    ]
    return [
        Exceeded(quota, limit, size, what, "make it smaller", unit)
        for quota, limit, size, changed, what, unit in checks
        if changed and size > limit
    ]


@dataclass(frozen=True)
class QuotaView:
    """A user's quotas as the API shows them: the limits, which of them are the user's
    own (the rest are defaults), and what the user holds now."""

    user_id: str
    limits: Quotas
    custom: frozenset[str]
    endpoints: int
    replicas: int
    replicas_by_flavor: Mapping[str, int]
    # What flavor_share counts on a GPU flavor (replicas x gpu_num).
    gpus_by_flavor: Mapping[str, int]


class QuotaService:
    def __init__(self, db: Database, clock: Clock, defaults: Quotas) -> None:
        self.db = db
        self.clock = clock
        self.defaults = defaults

    def limits(self, user_id: str) -> Quotas:
        """The user's effective limits (``.log_followers`` for the log service)."""
        with self.db.session() as session:
            return self.defaults.with_overrides(QuotaRepository(session).overrides(user_id))

    def get(self, user_id: str) -> QuotaView:
        with self.db.session() as session:
            self._require_user(session, user_id)
            return self._view(QuotaRepository(session), user_id)

    def update(self, user_id: str, patch: QuotaPatch) -> QuotaView:
        changes = {name: getattr(patch, name) for name in patch.model_fields_set}
        with self.db.session() as session:
            self._require_user(session, user_id)
            quotas = QuotaRepository(session)
            if changes:
                quotas.set(user_id, changes, self.clock.now())
            return self._view(quotas, user_id)

    def check(
        self, session: Session, user: User, updated: Endpoint, current: Endpoint | None
    ) -> None:
        """Refuses (403 ``quota_exceeded``) a write that would take ``user`` past a
        quota. Runs in the caller's transaction, before it writes."""
        if user.is_admin:
            return
        repository = QuotaRepository(session)
        repository.lock_user(user.user_id)
        quotas = self.defaults.with_overrides(repository.overrides(user.user_id))
        problems = size_violations(quotas, updated, current)
        stored = FlavorRepository(session).get(updated.flavor_id)
        if stored is not None:
            flavor = FlavorUnits(
                stored.flavor.flavor_id,
                stored.flavor.display_name,
                stored.flavor.capacity,
                stored.flavor.has_gpus,
            )
            # On a GPU flavor, what the user's replicas hold counts too: a stopped
            # endpoint's replicas keep their GPUs while they drain, so a stop and a
            # start must not let one user hold twice their share meanwhile.
            on_flavor = (
                max(
                    repository.running_gpus(user.user_id, flavor.flavor_id),
                    repository.held_gpus(user.user_id, flavor.flavor_id),
                )
                if flavor.gpus
                else repository.running_replicas(user.user_id, flavor.flavor_id)
            )
            before = Usage(
                repository.endpoint_count(user.user_id),
                repository.running_replicas(user.user_id),
                on_flavor,
            )
            problems += usage_violations(
                quotas, before, usage_after(before, current, updated, flavor), flavor
            )
        if problems:
            raise Forbidden(
                "; ".join(p.message(user.user_id) for p in problems), code=ErrorCode.QUOTA_EXCEEDED
            )

    def _view(self, quotas: QuotaRepository, user_id: str) -> QuotaView:
        overrides = quotas.overrides(user_id)
        return QuotaView(
            user_id=user_id,
            limits=self.defaults.with_overrides(overrides),
            custom=frozenset(overrides),
            endpoints=quotas.endpoint_count(user_id),
            replicas=quotas.running_replicas(user_id),
            replicas_by_flavor=quotas.replicas_by_flavor(user_id),
            gpus_by_flavor=quotas.gpus_by_flavor(user_id),
        )

    @staticmethod
    def _require_user(session: Session, user_id: str) -> None:
        if AccountRepository(session).user_by_id(user_id) is None:
            raise NotFound(f"no user {user_id!r}; GET /v1/users lists them")
