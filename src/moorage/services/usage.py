"""``GET /v1/usage``: a user's (or, for the admin, everyone's) billed seconds and costs
over a window, grouped by endpoint, UTC day, flavor or user.

Usage is read up to now (``store/usage.py``: stored records plus the seconds since the
last checkpoint) and added up by the pure rules of ``models/billing.py``, so it
matches ``billing_metadata`` to the second. Deleted endpoints' usage is included:
their records stay. Parsing and checking the window are pure functions here, with
"now" passed in, so they are tested without a server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from moorage.clock import Clock
from moorage.errors import ErrorCode, Forbidden, MoorageError, NotFound
from moorage.models.accounts import User
from moorage.models.billing import GroupBy, ReplicaRate, UsageTotal, month_start, usage_totals
from moorage.models.flavors import CURRENCIES
from moorage.store.accounts import AccountRepository
from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from moorage.store.flavors import FlavorRepository
from moorage.store.usage import UsageRepository
from moorage.wire import timestamp

__all__ = [
    "MAX_WINDOW",
    "InvalidQuery",
    "UsageReport",
    "UsageRow",
    "UsageService",
    "UsageWindow",
    "cost_text",
    "costs_of",
    "parse_instant",
    "scope",
    "usage_window",
]

# A year and a day: a leap year's whole usage fits, and one request reads at most that.
MAX_WINDOW = timedelta(days=366)
_ECHO_CHARS = 64
_ALL_USERS = ""  # the one user every rate is given when totals are added up


class InvalidQuery(MoorageError):
    """A query parameter outside what the route allows: 422, as FastAPI answers a
    parameter off the schema, with a message naming the parameter."""

    status_code = 422
    code = ErrorCode.INVALID_REQUEST

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def _quoted(text: str) -> str:
    return repr(text if len(text) <= _ECHO_CHARS else text[:_ECHO_CHARS] + "...")


def parse_instant(field: str, text: str) -> datetime:
    """An ISO 8601 timestamp (``2026-01-31T12:00:00Z``) or date (``2026-01-31``, its
    midnight), in UTC when it names no zone."""
    allowed = "must be an ISO 8601 date (2026-01-31) or timestamp (2026-01-31T12:00:00Z)"
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        # A '+' left unescaped in a URL's query arrives as a space.
        hint = "; write a + in a URL's query as %2B" if " " in text.strip() else ""
        raise InvalidQuery(field, f"{allowed}, got {_quoted(text)}{hint}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidQuery(
            field, f"{allowed} within years 1 to 9999, got {_quoted(text)}"
        ) from None


@dataclass(frozen=True)
class UsageWindow:
    """[start, end) in UTC."""

    start: datetime
    end: datetime


def usage_window(start: str | None, end: str | None, now: datetime) -> UsageWindow:
    """The window ``from``/``to`` ask for: by default from the start of ``now``'s UTC
    month to ``now``; ``to`` after ``from``, at most :data:`MAX_WINDOW` apart."""
    low = parse_instant("from", start) if start is not None else month_start(now)
    high = parse_instant("to", end) if end is not None else now
    if high <= low:
        raise InvalidQuery(
            "to", f"must be after from ({timestamp(low)} UTC), got {timestamp(high)} UTC"
        )
    if high - low > MAX_WINDOW:
        raise InvalidQuery(
            "to",
            f"must be at most {MAX_WINDOW.days} days after from ({timestamp(low)} UTC), "
            f"got {timestamp(high)} UTC; ask for a longer span window by window",
        )
    return UsageWindow(low, high)


def scope(user: User, user_id: str | None) -> str | None:
    """Whose usage the caller reads: a user their own only (another's needs the admin
    token, as another user's quota does), the admin everyone's or ``user_id``'s."""
    if user.is_admin:
        return user_id
    if user_id is not None and user_id != user.user_id:
        raise Forbidden("reading another user's usage needs the admin token")
    return user.user_id


@dataclass(frozen=True)
class UsageRow:
    """One group's totals, with the endpoint's, user's or flavor's name; ``is_deleted``
    for ``group_by=endpoint`` only."""

    total: UsageTotal
    name: str | None = None
    is_deleted: bool | None = None


@dataclass(frozen=True)
class UsageReport:
    window: UsageWindow
    group_by: GroupBy
    user_id: str | None
    rows: tuple[UsageRow, ...]
    totals: UsageTotal


def _as_one_user(rates: dict[str, ReplicaRate]) -> dict[str, ReplicaRate]:
    """Every rate with the same user, so totals by user are the window's grand total,
    rounded once like every other total."""
    return {key: dataclasses.replace(rate, user_id=_ALL_USERS) for key, rate in rates.items()}


def _named(session: Session, group_by: GroupBy, totals: Sequence[UsageTotal]) -> Iterator[UsageRow]:
    """Each row with what a person reads it by: the endpoint's name (and whether it is
    deleted), the user's name or the flavor's display name; none for a day."""
    keys = [t.key for t in totals]
    if group_by is GroupBy.ENDPOINT:
        endpoints = {e.service_id: e for e in EndpointRepository(session).get_many(keys)}
        for total in totals:
            found = endpoints.get(total.key)
            yield UsageRow(
                total,
                name=found.name if found else None,
                is_deleted=found.is_deleted if found else None,
            )
    elif group_by is GroupBy.USER:
        accounts = AccountRepository(session)
        for total in totals:
            account = accounts.user_by_id(total.key)
            yield UsageRow(total, name=account.name if account else None)
    elif group_by is GroupBy.FLAVOR:
        flavors = FlavorRepository(session)
        for total in totals:
            flavor = flavors.get(total.key)
            yield UsageRow(total, name=flavor.flavor.display_name if flavor else None)
    else:
        yield from (UsageRow(total) for total in totals)


def _nothing() -> UsageTotal:
    return UsageTotal("total", 0, 0, dict.fromkeys(CURRENCIES, Decimal(0)))


class UsageService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def window(self, start: str | None, end: str | None) -> UsageWindow:
        return usage_window(start, end, self.clock.now())

    def report(
        self,
        user: User,
        window: UsageWindow,
        group_by: GroupBy,
        user_id: str | None = None,
    ) -> UsageReport:
        """The caller's usage in ``window`` by ``group_by`` (see :func:`scope`)."""
        whose = scope(user, user_id)
        now = self.clock.now()
        with self.db.session() as session:
            if whose is not None and AccountRepository(session).user_by_id(whose) is None:
                # Only the admin gets here with another id: a typo must not read as 0.
                raise NotFound(f"no user {whose!r}; GET /v1/users lists them")
            usage = UsageRepository(session).up_to(now, user_id=whose, since=window.start)
            totals = usage_totals(usage.records, usage.rates, group_by, window.start, window.end)
            rows = tuple(_named(session, group_by, totals))
        grand = usage_totals(
            usage.records, _as_one_user(usage.rates), GroupBy.USER, window.start, window.end
        )
        return UsageReport(
            window=window,
            group_by=group_by,
            user_id=whose,
            rows=rows,
            totals=dataclasses.replace(grand[0], key="total") if grand else _nothing(),
        )


def cost_text(amount: Decimal) -> str:
    """A cost as the API shows it: a decimal string with 6 places (``7.500000``)."""
    return f"{amount:.6f}"


def costs_of(total: UsageTotal) -> dict[str, str]:
    return {currency: cost_text(total.costs.get(currency, Decimal(0))) for currency in CURRENCIES}
