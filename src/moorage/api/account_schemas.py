"""Response bodies of the account routes (usage, budgets, quotas, secrets, registry
credentials): what the OpenAPI document promises, shared with the Python SDK.

They live apart from their routers so that a client can import them without the
server's dependencies, as it does ``schemas.py``'s.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from moorage.api.schemas import Timestamp
from moorage.models.billing import GroupBy
from moorage.models.budgets import BudgetPeriod, BudgetState

_COST = r"^[0-9]+\.[0-9]{6}$"


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- usage --------------------------------------------------------------------------------


class UsageCost(_Closed):
    """Cost in each currency, as a decimal string with 6 places (``7.500000``)."""

    usd: str = Field(pattern=_COST, examples=["7.500000"])
    cny: str = Field(pattern=_COST, examples=["0.000000"])
    nmt: str = Field(pattern=_COST, examples=["0.000000"])


class UsageTotals(_Closed):
    instance_seconds: int = Field(
        ge=0, description="Seconds replicas were billed for, added over replicas."
    )
    gpu_seconds: int = Field(ge=0, description="Instance-seconds times each replica's gpu_num.")
    cost: UsageCost


class UsageRowOut(UsageTotals):
    key: str = Field(
        description="The endpoint id, UTC day (2026-01-31), flavor id or user id, as group_by says."
    )
    name: str | None = Field(
        default=None,
        description="The endpoint's, user's or flavor's name (none for group_by=day).",
    )
    is_deleted: bool | None = Field(
        default=None,
        description="Whether the endpoint is deleted (group_by=endpoint only); a deleted "
        "endpoint's usage stays.",
    )


class UsageOut(_Closed):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: Timestamp = Field(
        alias="from",
        description="Start of the window, included: UTC, as YYYY-MM-DD HH:MM:SS (usage is "
        "counted from the whole second at or below the from asked for).",
    )
    end: Timestamp = Field(
        alias="to",
        description="End of the window, excluded: UTC, as YYYY-MM-DD HH:MM:SS (to the whole "
        "second at or below the to asked for).",
    )
    group_by: GroupBy
    user_id: str | None = Field(
        description="Whose usage this is; null when the admin reads every user's."
    )
    rows: list[UsageRowOut] = Field(description="One row per group, sorted by key.")
    totals: UsageTotals = Field(
        description="The whole window: seconds added up, each cost rounded once (it may "
        "differ from the rows' sum in the 6th place)."
    )


# -- budgets ------------------------------------------------------------------------------


class BudgetOut(_Closed):
    currency: str
    limit: str = Field(description="Decimal string.")
    warning: str = Field(description="Decimal string.")
    period: BudgetPeriod
    spent: str = Field(
        description="What the user's usage in this currency cost in the period, to the "
        "second (decimal string)."
    )
    state: BudgetState = Field(
        description="ok; warning (spent at or above the warning); exceeded (at or above "
        "the limit: their endpoints in this currency are stopped, creates, starts and "
        "scale-ups refused)."
    )
    message: str | None = Field(description="The limit and the spend, when not ok.")


class BudgetsOut(_Closed):
    user_id: str
    budgets: list[BudgetOut] = Field(description="Worst first.")


# -- quotas -------------------------------------------------------------------------------


class QuotaLimits(_Closed):
    endpoints: int = Field(description="Endpoints not deleted (running or stopped).")
    replicas: int = Field(description="Replicas of running endpoints, all flavors together.")
    flavor_share: float = Field(
        description="Share of each flavor's capacity one user may hold (at least 1): GPUs "
        "(replicas x gpu_num) on a flavor with GPUs, replicas on others."
    )
    command_bytes: int = Field(
        description="Size of deploy_metadata.command and args in UTF-8 bytes."
    )
    env_vars: int = Field(description="Variables in deploy_metadata.env.")
    env_bytes: int = Field(description="Size of deploy_metadata.env as NAME=value bytes.")
    name_chars: int = Field(description="Characters of an endpoint's name.")
    description_chars: int = Field(description="Characters of an endpoint's description.")
    log_followers: int = Field(description="Log streams with follow=true open at once.")
    secrets: int = Field(description="Secrets stored (PUT /v1/secrets/{name}).")


class QuotaUsage(_Closed):
    endpoints: int
    replicas: int
    replicas_by_flavor: dict[str, int]
    gpus_by_flavor: dict[str, int] = Field(
        description="GPUs (replicas x gpu_num) of running endpoints, by flavor id: what "
        "flavor_share counts on a flavor with GPUs."
    )


class QuotaOut(_Closed):
    user_id: str
    quota: QuotaLimits
    custom: Annotated[
        list[str], Field(description="The limits set for this user; the rest are defaults.")
    ]
    usage: QuotaUsage


# -- secrets and registry credentials -------------------------------------------------------


class SecretOut(_Closed):
    name: str
    created_at: Timestamp
    updated_at: Timestamp


class SecretList(_Closed):
    secret_list: list[SecretOut]


class RegistryCredentialOut(_Closed):
    registry: str
    created_at: Timestamp
    updated_at: Timestamp


class RegistryCredentialList(_Closed):
    registry_credential_list: list[RegistryCredentialOut]
