"""The API's response bodies as pydantic models: what the OpenAPI document promises.

Field names and nesting are the reference page's (``flavor_list``, the service
object with ``resource_metadata`` ... ``payment_type``), plus moorage's own
sections the reference shows as ``{...}``. ``render.py`` builds these from
service results; FastAPI validates each answer against them, so the document
and the wire cannot drift apart. Bodies are closed (``additionalProperties:
false``) so a client can rely on the exact set of fields.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from moorage.models.budgets import BudgetState
from moorage.models.endpoints import (
    EndpointStatus,
    GatewaySettings,
    ReadinessProbe,
    Resources,
)
from moorage.models.replicas import FailureReason, ReplicaEventKind, ReplicaState
from moorage.models.states import EndpointEventKind

# ``YYYY-MM-DD HH:MM:SS`` in UTC, as the reference writes them (``wire.format_timestamp``).
# Every time the API answers is of this one type, so the OpenAPI document says the format
# wherever a time appears.
Timestamp = Annotated[
    str,
    StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"),
    Field(
        description="UTC, as YYYY-MM-DD HH:MM:SS (whole seconds, no zone suffix)",
        examples=["2026-12-03 07:12:04"],
    ),
]
Count = Annotated[int, Field(ge=0)]
Money = Annotated[float, Field(ge=0)]

# The longest message an error body carries (``api/errors.py`` cuts longer ones).
MAX_ERROR_MESSAGE_CHARS = 2048


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Closed):
    """Every refusal: a stable ``code`` to branch on, a ``message`` saying what to do."""

    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    message: Annotated[str, StringConstraints(max_length=MAX_ERROR_MESSAGE_CHARS)]


class Health(_Closed):
    status: str


# -- flavors ------------------------------------------------------------------------------


class Billing(_Closed):
    cny_price_unit: Money
    usd_price_unit: Money
    nmt_price_unit: Money


class Flavor(_Closed):
    flavor_id: str
    display_name: str
    cluster_id: str
    cluster_flavor_id: str
    meta_info: dict[str, str]
    billing: Billing
    created_at: Timestamp | None
    updated_at: Timestamp | None
    deleted_at: Timestamp | None
    is_deleted: bool
    available_num: Count
    node_max_gpu: Count


class FlavorList(_Closed):
    flavor_list: list[Flavor]


# -- endpoints ----------------------------------------------------------------------------


class ScalePolicy(_Closed):
    """How an automatic endpoint scales (docs/autoscaling.md)."""

    metric: str
    target: float
    min_instances: int
    max_instances: int
    scale_up_delay_s: float
    scale_down_delay_s: float
    window_s: float


class ResourceMetadata(_Closed):
    resource_display_name: str | None
    scale_type: str
    flavor_id: str
    # With scale_type "auto": the count the autoscaler wants now.
    target_instance_number: int
    scale_policy: ScalePolicy | None
    VRAM: str | None
    image_size: str | None


class BillingMetadata(_Closed):
    payment_type: str = Field(description="The currency this endpoint is billed in.")
    price_per_instance_hour: Money = Field(
        description="What a replica placed now costs per hour: the flavor's price today "
        "per GPU times deploy_metadata.gpu_num (per instance on a flavor without GPUs)."
    )
    instance_number: int
    price_per_hour: Money = Field(
        description="What its replicas cost per hour now: the sum of the rates of those "
        "being billed (placed, not stopped), each fixed when it was placed, so replicas "
        "placed before a price change keep their price; 0 when none is billed."
    )
    cost_so_far: Money = Field(
        description="What its replicas have cost since it was created, to the second, at "
        "the prices fixed when each was placed (docs/billing.md)."
    )
    cost_this_month: Money = Field(description="The same, since the UTC month began.")
    budget_state: BudgetState = Field(
        default=BudgetState.OK,
        description="Its owner's spending limit in this currency: ok, warning (near it) "
        "or exceeded (endpoints stopped, creates and starts refused).",
    )
    budget_message: str | None = Field(
        default=None, description="What the limit is and what has been spent, when not ok."
    )


class ReplicaInfo(_Closed):
    replica_id: str
    state: ReplicaState
    address: str | None
    revision: int
    since: Timestamp | None
    last_failure: str | None


class EndpointMetadata(_Closed):
    endpoint_url: str
    ready_replicas: Count
    replicas: list[ReplicaInfo]


class Volume(_Closed):
    name: str
    mount_path: str


class DeployMetadata(_Closed):
    image_url: str
    command: str | None
    port: int
    gpu_num: int
    env: dict[str, str]
    readiness_probe: ReadinessProbe
    resources: Resources
    args: list[str]
    volumes: list[Volume]
    shm_size_mb: int | None
    # Names only: a secret's value is never shown (GET /v1/secrets lists names too).
    secrets: list[str] = []
    revision: int


class Endpoint(_Closed):
    """The reference's service object, field for field, plus ``gateway_metadata``."""

    service_id: str
    name: str
    description: str
    user_id: str
    status: EndpointStatus
    status_info: str | None
    resource_metadata: ResourceMetadata
    billing_metadata: BillingMetadata
    endpoint_metadata: EndpointMetadata
    deploy_metadata: DeployMetadata
    gateway_metadata: GatewaySettings
    service_type: str
    created_at: Timestamp | None
    updated_at: Timestamp | None
    deleted_at: Timestamp | None
    is_deleted: bool
    payment_type: str


class EndpointPage(_Closed):
    service_list: list[Endpoint]
    total: Count
    page: int
    page_size: int


class EndpointEvent(_Closed):
    """One thing that happened to the endpoint or one of its replicas, and why."""

    time: Timestamp
    kind: ReplicaEventKind | EndpointEventKind = Field(
        description="A replica's event (`replica_id` set), or a change of the endpoint "
        "itself (`replica_id` null): created, scaled, updated, stopped, started, deleted, "
        "rollout_begun, rollout_finished, rolled_back."
    )
    replica_id: str | None
    revision: int = Field(description="The replica's revision, or the endpoint's after a change.")
    reason: FailureReason | None = Field(description="Why a replica failed (`failed` only).")
    detail: str | None = Field(
        description="As recorded: the exit code and last output of a failure, why a "
        "replica stopped or left the rotation, `adopted` for a replica found after a restart."
    )
    message: str = Field(description="The event as one sentence.")


class EventPage(_Closed):
    event_list: list[EndpointEvent]
    total: Count
    page: int
    page_size: int


_SINCE_START = (
    " Cumulative since each gateway started, summed over the gateways: chart the "
    "difference between two readings divided by the time between them; a gateway's "
    "restart makes it drop."
)


class EndpointTraffic(_Closed):
    """An endpoint's requests as its gateways count them, for request-rate, error-rate
    and latency charts."""

    service_id: str
    time: Timestamp = Field(
        description="When these counters were read: UTC, as YYYY-MM-DD HH:MM:SS."
    )
    in_flight: Count = Field(description="Requests at the endpoint's replicas now.")
    waiting: Count = Field(
        description="Requests waiting now: queued for a replica with room, or held "
        "while one starts."
    )
    requests_total: Count = Field(
        description="Requests admitted to the endpoint (once each, however often retried)."
        + _SINCE_START
    )
    responses_total: Count = Field(
        description="Requests answered, whatever the status, the gateway's own refusals "
        "(429, 502, 503, 504...) included, counted when the response ended (a stream at "
        "its last byte). A request whose client left before any response is not counted."
        + _SINCE_START
    )
    errors_total: Count = Field(
        description="Responses with a status of 500 or more, the replica's or the "
        "gateway's." + _SINCE_START
    )
    latency_seconds_total: float = Field(
        ge=0,
        description="The sum, over the responses counted in `responses_total`, of the "
        "seconds from the request's arrival at the gateway to the end of its response "
        "(queueing and cold starts included): its difference divided by that of "
        "`responses_total` is the mean latency." + _SINCE_START,
    )


# -- accounts -----------------------------------------------------------------------------


class User(_Closed):
    user_id: str
    name: str
    is_admin: bool
    created_at: Timestamp | None


class UserList(_Closed):
    user_list: list[User]


class Token(_Closed):
    """A token's record; never its text, except once in ``IssuedToken``."""

    token_id: str
    user_id: str
    name: str
    prefix: str
    created_at: Timestamp | None
    revoked_at: Timestamp | None
    is_revoked: bool


class IssuedToken(Token):
    token: str = Field(description="The token itself: shown here once, never again.")


class TokenList(_Closed):
    token_list: list[Token]


# -- the gateway route table --------------------------------------------------------------


class _Open(BaseModel):
    """Route-table parts stay open: a standalone gateway must receive every field the
    control plane adds, even before this document names it."""

    model_config = ConfigDict(extra="allow")


class RouteReplica(_Open):
    replica_id: str
    address: str


class RouteEntry(_Open):
    service_id: str
    token_sha256: list[str]
    replicas: list[RouteReplica]
    status: str
    # A plain object: a key the gateway settings gain must reach gateways unchanged.
    gateway_metadata: dict[str, Any]


class RouteTable(_Open):
    endpoints: list[RouteEntry]
    known_token_sha256: list[str]
    version: str


class DemandAccepted(_Closed):
    """How many endpoints a gateway's demand report named."""

    endpoints: Count
