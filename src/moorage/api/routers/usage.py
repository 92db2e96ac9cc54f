"""``/v1/usage``: billed seconds and costs over a window, as JSON or CSV.

A user reads their own usage; the admin reads everyone's, or one user's with
``user_id``. Another user's ``user_id`` needs the admin token (403), as another user's
quota does. Costs are decimal strings with 6 places: money never goes through a float.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict

from moorage.api.account_schemas import UsageCost, UsageOut, UsageRowOut, UsageTotals
from moorage.api.deps import CurrentUser, ServicesDep
from moorage.api.responses import AUTH, errors
from moorage.api.usage_csv import CSV_MEDIA_TYPE, render_csv, wants_csv
from moorage.models.billing import GroupBy, UsageTotal
from moorage.services.usage import MAX_WINDOW, UsageReport, costs_of
from moorage.wire import timestamp

router = APIRouter(prefix="/v1", tags=["usage"])

_COST = r"^[0-9]+\.[0-9]{6}$"
# Long enough for any ISO 8601 timestamp or id; a longer value is refused unread.
_PARAM_CHARS = 64


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _cost(total: UsageTotal) -> UsageCost:
    return UsageCost(**costs_of(total))


def _render(report: UsageReport) -> UsageOut:
    return UsageOut(
        start=timestamp(report.window.start),
        end=timestamp(report.window.end),
        group_by=report.group_by,
        user_id=report.user_id,
        rows=[
            UsageRowOut(
                key=row.total.key,
                name=row.name,
                is_deleted=row.is_deleted,
                instance_seconds=row.total.instance_seconds,
                gpu_seconds=row.total.gpu_seconds,
                cost=_cost(row.total),
            )
            for row in report.rows
        ],
        totals=UsageTotals(
            instance_seconds=report.totals.instance_seconds,
            gpu_seconds=report.totals.gpu_seconds,
            cost=_cost(report.totals),
        ),
    )


_WHEN = (
    "An ISO 8601 timestamp (2026-01-31T12:00:00Z) or date (2026-01-31: its midnight); "
    "UTC when it names no zone."
)


def _csv_name(report: UsageReport) -> str:
    """``usage-by-day-2026-12-01-2026-12-03.csv``: what the download is saved as."""
    return (
        f"usage-by-{report.group_by}-{report.window.start.date().isoformat()}-"
        f"{report.window.end.date().isoformat()}.csv"
    )


@router.get(
    "/usage",
    summary="Billed seconds and costs over a window (yours; the admin's: everyone's)",
    description=(
        "Usage in [from, to), grouped by endpoint, UTC day, flavor or user, to the second "
        "(the seconds since the last checkpoint included). Deleted endpoints' usage is "
        f"included. The window is at most {MAX_WINDOW.days} days. With `Accept: text/csv`, "
        "the rows as CSV under a header line."
    ),
    response_model=UsageOut,
    responses={
        200: {
            "description": "The usage, as JSON or (`Accept: text/csv`) CSV.",
            "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
        **errors(AUTH, 403, 404, 422),
    },
)
async def usage(
    request: Request,
    services: ServicesDep,
    user: CurrentUser,
    start: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=_PARAM_CHARS,
            description=f"Start of the window, included. {_WHEN} Default: the start of "
            "the current UTC month.",
            examples=["2026-01-01"],
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            alias="to",
            max_length=_PARAM_CHARS,
            description=f"End of the window, excluded. {_WHEN} Default: now.",
            examples=["2026-02-01T00:00:00Z"],
        ),
    ] = None,
    group_by: Annotated[GroupBy, Query(description="What the rows are.")] = GroupBy.ENDPOINT,
    user_id: Annotated[
        str | None,
        Query(
            max_length=_PARAM_CHARS,
            description="One user's usage (the admin; a user may name only themselves).",
        ),
    ] = None,
) -> UsageOut | Response:
    window = services.usage.window(start, end)
    report = await run_in_threadpool(services.usage.report, user, window, group_by, user_id)
    if wants_csv(request.headers.get("accept")):
        return Response(
            render_csv(report),
            media_type=CSV_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{_csv_name(report)}"'},
        )
    return _render(report)
