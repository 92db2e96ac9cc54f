"""ORM tables. Kept apart from the domain models so storage can change alone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite keeps no time zone."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """Money, exactly: NUMERIC on PostgreSQL; text on SQLite, whose NUMERIC is a
    binary float that would turn 0.147164 into 0.14716399999999999."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric())

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UtcDateTime}  # noqa: RUF012


class UserRow(Base):
    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class TokenRow(Base):
    __tablename__ = "api_tokens"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # The token MOORAGE_ADMIN_TOKEN (or the token file) configures: replaced at start
    # when the configuration changes, and never revoked through the API.
    bootstrap: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class UserQuotaRow(Base):
    """One user's own limits. A null column means the server's default (MOORAGE_QUOTA_*),
    so changing a default reaches every user who was not given a value of their own."""

    __tablename__ = "user_quotas"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), primary_key=True)
    endpoints: Mapped[int | None] = mapped_column(Integer)
    replicas: Mapped[int | None] = mapped_column(Integer)
    flavor_share: Mapped[float | None] = mapped_column(Float)
    command_bytes: Mapped[int | None] = mapped_column(Integer)
    env_vars: Mapped[int | None] = mapped_column(Integer)
    env_bytes: Mapped[int | None] = mapped_column(Integer)
    name_chars: Mapped[int | None] = mapped_column(Integer)
    description_chars: Mapped[int | None] = mapped_column(Integer)
    log_followers: Mapped[int | None] = mapped_column(Integer)
    secrets: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class UserSecretRow(Base):
    """A user's secret (``kind`` env: a variable for replicas) or registry credentials
    (``kind`` registry, named by the registry), encrypted (``secretbox.py``): the store
    never holds a value in clear."""

    __tablename__ = "user_secrets"
    __table_args__ = (UniqueConstraint("user_id", "kind", "name"),)

    secret_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SandboxUidRow(Base):
    """The host uid (and gid) an owner's sandboxed replicas run as when moorage runs as
    root (``models/sandbox_uids.py``): given once, never to anyone else."""

    __tablename__ = "sandbox_uids"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), primary_key=True)
    uid: Mapped[int] = mapped_column(BigInteger, unique=True)
    created_at: Mapped[datetime]


class FlavorRow(Base):
    __tablename__ = "flavors"

    flavor_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(128))
    cluster_id: Mapped[str] = mapped_column(String(64))
    cluster_flavor_id: Mapped[str] = mapped_column(String(128))
    meta_info: Mapped[dict[str, Any]]
    prices: Mapped[dict[str, Any]]
    capacity: Mapped[int] = mapped_column(Integer)
    node_max_gpu: Mapped[int] = mapped_column(Integer)
    vram: Mapped[str | None] = mapped_column(String(32))
    # A GPU flavor's GPUs (``Gpu.to_json`` each); empty for a flavor of replica slots.
    gpus: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class EndpointRow(Base):
    __tablename__ = "endpoints"
    __table_args__ = (
        # A name is unique among a user's live endpoints; deleting one frees it.
        Index(
            "uq_endpoints_user_live_name",
            "user_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_endpoints_desired_state", "desired_state", "deleted_at"),
        Index(
            "ix_endpoints_user_created",
            "user_id",
            "deleted_at",
            text("created_at DESC"),
            "service_id",
        ),
        Index("ix_endpoints_updated_at", "updated_at"),
    )

    service_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text)
    payment_type: Mapped[str] = mapped_column(String(8))
    flavor_id: Mapped[str] = mapped_column(String(32), index=True)
    scale_type: Mapped[str] = mapped_column(String(16))
    target_instance_number: Mapped[int] = mapped_column(Integer)
    deploy: Mapped[dict[str, Any]]
    revision: Mapped[int] = mapped_column(Integer)
    desired_state: Mapped[str] = mapped_column(String(16))
    service_type: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
    rollout_note: Mapped[str | None] = mapped_column(Text)
    gateway: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Why moorage (not the user) stopped it, e.g. a spending limit; cleared by a start.
    stop_reason: Mapped[str | None] = mapped_column(Text)
    # scale_type "auto": its policy, and when its autoscaler last changed its count.
    scale_policy: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    scaled_at: Mapped[datetime | None]
    # What quotas and capacity count it for: its count, or its maximum when automatic.
    reserved_instances: Mapped[int] = mapped_column(Integer, server_default="0")


class EndpointRevisionRow(Base):
    """Every spec an endpoint has run, so a failed rollout can go back to the last good one."""

    __tablename__ = "endpoint_revisions"

    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.service_id"), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, primary_key=True)
    flavor_id: Mapped[str] = mapped_column(String(32))
    deploy: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class ReplicaRow(Base):
    __tablename__ = "replicas"
    __table_args__ = (Index("ix_replicas_endpoint_finished", "endpoint_id", "finished"),)

    replica_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.service_id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    # Set once the replica's stopped event is written, so live replicas are one
    # indexed lookup instead of a scan over every event ever recorded.
    finished: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    # What the runtime is doing before the replica can start (an image pull's
    # progress): an observation shown to users, not a state.
    progress: Mapped[str | None] = mapped_column(String(255))
    # What the controller last saw of the replica while it started (status_info's
    # ``StartupWatch``): its latest probe's result and since when, the port it was
    # given and the TCP ports it listens on ("8080,9090"; "" none; NULL unknown).
    # Written when one changes, never once per probe.
    probe_detail: Mapped[str | None] = mapped_column(String(255))
    probe_since: Mapped[datetime | None]
    given_port: Mapped[int | None] = mapped_column(Integer)
    listening_ports: Mapped[str | None] = mapped_column(String(255))


class GpuAllocationRow(Base):
    """One GPU given to one replica. The GPU's UUID is the key, so the store itself
    refuses to give a GPU to two replicas; the row goes in the transaction that
    records the replica stopped (``store/replicas.py``)."""

    __tablename__ = "gpu_allocations"

    gpu_uuid: Mapped[str] = mapped_column(String(128), primary_key=True)
    replica_id: Mapped[str] = mapped_column(String(32), index=True)
    endpoint_id: Mapped[str] = mapped_column(String(32), index=True)
    flavor_id: Mapped[str] = mapped_column(String(32), index=True)
    node: Mapped[str] = mapped_column(String(128))
    allocated_at: Mapped[datetime]


class ReplicaEventRow(Base):
    __tablename__ = "replica_events"
    __table_args__ = (Index("ix_replica_events_replica_event", "replica_id", "event_id"),)

    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    replica_id: Mapped[str] = mapped_column(ForeignKey("replicas.replica_id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    address: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)


class EndpointEventRow(Base):
    """Changes to an endpoint itself (created, scaled, a rollout, a rollback), written in
    the transaction that makes them; replicas' own events are in ``replica_events``."""

    __tablename__ = "endpoint_events"
    __table_args__ = (Index("ix_endpoint_events_endpoint_event", "endpoint_id", "event_id"),)

    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    endpoint_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    revision: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)


class ReplicaRateRow(Base):
    """What a replica is billed at, fixed in the transaction that records its first
    ``started`` (``store/rates.py``), and how far its usage is closed into records.
    Kept, like the replica, after its endpoint is deleted."""

    __tablename__ = "replica_rates"
    __table_args__ = (Index("ix_replica_rates_settled", "settled", "replica_id"),)

    replica_id: Mapped[str] = mapped_column(ForeignKey("replicas.replica_id"), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[str] = mapped_column(String(32), index=True)
    flavor_id: Mapped[str] = mapped_column(String(32))
    gpu_num: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(8))
    price_per_hour: Mapped[Decimal] = mapped_column(ExactDecimal)
    placed_at: Mapped[datetime]
    # Usage is in records up to here (None: none yet); moved only by a conditional
    # update from the value read, so two checkpoints never close the same seconds.
    billed_until: Mapped[datetime | None]
    # The replica stopped and every second it was billed is in records: checkpoints
    # skip it from then on.
    settled: Mapped[bool] = mapped_column(Boolean, default=False)


class UsageRecordRow(Base):
    """Seconds one replica was billed over (period_start, period_end], within one UTC
    day, with what they cost at its rate (rounded to 6 places; totals are recomputed
    from seconds and rates and rounded once, ``models/billing.py``)."""

    __tablename__ = "usage_records"
    __table_args__ = (
        # The same second can never be stored twice, whatever a writer does.
        UniqueConstraint("replica_id", "period_start"),
        Index("ix_usage_records_user_day", "user_id", "day"),
        Index("ix_usage_records_endpoint_day", "endpoint_id", "day"),
    )

    record_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    replica_id: Mapped[str] = mapped_column(ForeignKey("replicas.replica_id"))
    endpoint_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    flavor_id: Mapped[str] = mapped_column(String(32))
    day: Mapped[date]
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    seconds: Mapped[int] = mapped_column(Integer)
    gpu_seconds: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(8))
    cost: Mapped[Decimal] = mapped_column(ExactDecimal)


class BudgetRow(Base):
    """A user's spending limit in one currency, over a UTC calendar month or all time,
    with the amount that warns before it (``models/budgets.py``)."""

    __tablename__ = "budgets"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8), primary_key=True)
    limit_amount: Mapped[Decimal] = mapped_column(ExactDecimal)
    warning_amount: Mapped[Decimal] = mapped_column(ExactDecimal)
    period: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime]


class HeartbeatRow(Base):
    """The last moment a part of moorage (``controller``) was seen working: after a
    restart, a replica found dead is billed up to here, not for the time moorage was
    down (``docs/billing.md``)."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime]


class GatewayDemandRow(Base):
    """One standalone gateway's last report of one endpoint's demand
    (``models/demand.py``); replaced at each report, ignored once stale."""

    __tablename__ = "gateway_demand"

    gateway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    in_flight: Mapped[int] = mapped_column(Integer)
    waiting: Mapped[int] = mapped_column(Integer)
    arrived: Mapped[int] = mapped_column(BigInteger)
    held: Mapped[int] = mapped_column(BigInteger)
    busy_s: Mapped[float] = mapped_column(Float)
    waited_s: Mapped[float] = mapped_column(Float)
    answered: Mapped[int] = mapped_column(BigInteger, server_default="0")
    errors: Mapped[int] = mapped_column(BigInteger, server_default="0")
    latency_s: Mapped[float] = mapped_column(Float, server_default="0")
    reported_at: Mapped[datetime] = mapped_column(index=True)


class ControllerLeaseRow(Base):
    """The controllers' lease (``store/leases.py``): who leads, at which epoch, until
    when by the database's clock (seconds since the Unix epoch)."""

    __tablename__ = "controller_leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    epoch: Mapped[int] = mapped_column(BigInteger, server_default="0")
    expires_at: Mapped[float] = mapped_column(Float, server_default="0")
