"""``/v1/users/{user_id}/budgets`` and ``/v1/budgets``: spending limits.

The admin sets, reads and removes any user's limits; a user reads their own, with
what they have spent and where it stands, and changes nothing. Amounts travel as
decimal strings (integers are accepted too) and are parsed as ``Decimal``, so a
limit is stored and shown to the last of its six decimals.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from moorage.api.account_schemas import BudgetOut, BudgetsOut
from moorage.api.deps import BudgetAdmin, CurrencyPath, CurrentUser, ServicesDep, UserIdPath
from moorage.api.responses import ADMIN, AUTH, BODY, errors
from moorage.models.budgets import MAX_AMOUNT, BudgetPeriod, BudgetStatus

router = APIRouter(prefix="/v1", tags=["budgets"])

_PLAIN = re.compile(r"[0-9]{1,13}(\.[0-9]{1,6})?")


def _plain_amount(value: object) -> Decimal:
    """An amount as the admin wrote it: a string of ASCII digits with at most six
    decimals ("100", "12.5"), or a JSON integer. A JSON number with decimals has
    already been through a float when it arrives, so it is taken only when its
    shortest spelling is plain (0.05, not 1e-07); to be read exactly, write it as a
    string."""
    if isinstance(value, bool):
        raise ValueError('must be a decimal string such as "12.5", not a boolean')
    if isinstance(value, int):
        return Decimal(value)
    text = repr(value) if isinstance(value, float) else value
    if not isinstance(text, str) or not _PLAIN.fullmatch(text):
        raise ValueError(
            'must be a decimal string such as "100" or "12.5": ASCII digits, at most 6 '
            "decimals (write an amount with decimals as a string to have it read exactly)"
        )
    return Decimal(text)


Amount = Annotated[
    Decimal,
    Field(
        ge=0,
        le=MAX_AMOUNT,
        decimal_places=6,
        description='A decimal string such as "100" or "12.5" (ASCII digits, at most 6 '
        "decimals), or a JSON integer; 0 to 1000000000000. A JSON number with decimals "
        "is read through a float: write it as a string to have it read exactly.",
    ),
    # After Field, so the OpenAPI document keeps minimum and maximum as numbers.
    BeforeValidator(_plain_amount),
]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BudgetIn(_Closed):
    limit: Amount = Field(
        description="What the user may spend in the period (at it, "
        "their endpoints in this currency stop)."
    )
    warning: Amount | None = Field(
        default=None,
        description="The spend that warns before the limit, at most the limit; 80% of "
        "the limit when left out.",
    )
    period: BudgetPeriod = Field(
        default=BudgetPeriod.MONTH,
        description="month: the spend counts from the first of the current UTC month; "
        "total: all of the user's usage.",
    )


def _text(amount: Decimal) -> str:
    """An amount as a person writes it, exactly: 100, 0.05, 12.345678."""
    return format(amount.normalize(), "f")


def _render(status: BudgetStatus) -> BudgetOut:
    budget = status.budget
    return BudgetOut(
        currency=budget.currency,
        limit=_text(budget.limit),
        warning=_text(budget.warning),
        period=budget.period,
        spent=_text(status.spent),
        state=status.state,
        message=status.message,
    )


def _list(user_id: str, statuses: tuple[BudgetStatus, ...]) -> BudgetsOut:
    return BudgetsOut(user_id=user_id, budgets=[_render(s) for s in statuses])


@router.get(
    "/budgets",
    summary="Your spending limits, what you spent and where it stands",
    response_model=BudgetsOut,
    responses=errors(AUTH),
)
def own_budgets(services: ServicesDep, user: CurrentUser) -> BudgetsOut:
    return _list(user.user_id, services.budgets.statuses(user.user_id))


@router.get(
    "/users/{user_id}/budgets",
    summary="A user's spending limits and spend (admin)",
    response_model=BudgetsOut,
    responses=errors(ADMIN, 404, 422),
)
def user_budgets(services: ServicesDep, _admin: BudgetAdmin, user_id: UserIdPath) -> BudgetsOut:
    return _list(user_id, services.budgets.statuses(user_id))


@router.put(
    "/users/{user_id}/budgets/{currency}",
    summary="Set a user's spending limit in a currency (admin)",
    description="Raising a limit above the spend lets creates and starts through at once; "
    "endpoints the limit stopped stay stopped until their user starts them.",
    response_model=BudgetOut,
    responses=errors(ADMIN, BODY, 404),
)
def put_budget(
    services: ServicesDep,
    _admin: BudgetAdmin,
    user_id: UserIdPath,
    currency: CurrencyPath,
    body: BudgetIn,
) -> BudgetOut:
    return _render(services.budgets.put(user_id, currency, body.limit, body.warning, body.period))


@router.delete(
    "/users/{user_id}/budgets/{currency}",
    summary="Remove a user's spending limit in a currency (admin)",
    description="Answers the user's remaining limits. Endpoints the limit stopped stay "
    "stopped until their user starts them.",
    response_model=BudgetsOut,
    responses=errors(ADMIN, 404, 422),
)
def delete_budget(
    services: ServicesDep, _admin: BudgetAdmin, user_id: UserIdPath, currency: CurrencyPath
) -> BudgetsOut:
    services.budgets.delete(user_id, currency)
    return _list(user_id, services.budgets.statuses(user_id))
