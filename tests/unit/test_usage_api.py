"""``GET /v1/usage``'s pure parts: reading ``from``/``to``, whose usage a caller reads,
CSV and its negotiation, and the ``/metrics`` counters' totals and monotonicity."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from moorage.api.usage_csv import HEADER, _cell, render_csv, wants_csv
from moorage.errors import Forbidden
from moorage.models.accounts import User
from moorage.models.billing import GroupBy, ReplicaRate, Usage, UsageTotal
from moorage.models.metering import UsageRecord
from moorage.services.usage import (
    InvalidQuery,
    UsageReport,
    UsageRow,
    UsageWindow,
    cost_text,
    parse_instant,
    scope,
    usage_window,
)
from moorage.services.usage_metrics import (
    Series,
    SeriesTotal,
    UsageMetricsView,
    series_totals,
    usage_families,
)

NOW = datetime(2026, 3, 15, 12, 30, 5, tzinfo=UTC)


def _user(user_id: str, *, admin: bool = False) -> User:
    return User(user_id=user_id, name=user_id, is_admin=admin, created_at=NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31T12:00:00Z", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31T12:00:00", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31T14:00:00+02:00", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31T12:00:00.250Z", datetime(2026, 1, 31, 12, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_from_and_to_read_iso_dates_and_timestamps_in_utc(text: str, expected: datetime) -> None:
    parsed = parse_instant("from", text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "31/01/2026", "", "x" * 500])
def test_a_bad_instant_is_refused_naming_the_field_and_what_is_allowed(text: str) -> None:
    with pytest.raises(InvalidQuery) as refused:
        parse_instant("to", text)
    assert refused.value.status_code == 422
    assert refused.value.message.startswith("to: must be an ISO 8601 date (2026-01-31)")
    assert len(refused.value.message) < 300, "the rejected value is quoted cut"


def test_an_instant_past_the_calendar_in_utc_is_refused() -> None:
    with pytest.raises(InvalidQuery, match=r"^from: .*within years 1 to 9999"):
        parse_instant("from", "0001-01-01T00:00:00+05:00")


def test_the_window_defaults_to_this_utc_month_up_to_now() -> None:
    assert usage_window(None, None, NOW) == UsageWindow(datetime(2026, 3, 1, tzinfo=UTC), NOW)
    assert usage_window("2026-03-10", None, NOW).end == NOW


def test_to_must_be_after_from() -> None:
    with pytest.raises(
        InvalidQuery,
        match=r"^to: must be after from \(2026-03-10 00:00:00 UTC\), got 2026-03-10 00:00:00 UTC$",
    ):
        usage_window("2026-03-10", "2026-03-10", NOW)
    with pytest.raises(InvalidQuery, match=r"^to: must be after from"):
        usage_window("2026-03-10", "2026-03-09", NOW)


def test_the_window_is_at_most_366_days() -> None:
    assert usage_window("2025-01-01", "2026-01-02", NOW).end == datetime(2026, 1, 2, tzinfo=UTC)
    with pytest.raises(InvalidQuery, match=r"^to: must be at most 366 days after from"):
        usage_window("2025-01-01", "2026-01-03", NOW)


def test_a_user_reads_their_own_usage_and_the_admin_anyones() -> None:
    alice = _user("alice")
    assert scope(alice, None) == "alice"
    assert scope(alice, "alice") == "alice"
    with pytest.raises(Forbidden, match="another user's usage needs the admin token"):
        scope(alice, "bob")
    admin = _user("admin", admin=True)
    assert scope(admin, None) is None
    assert scope(admin, "bob") == "bob"


def test_costs_are_shown_with_six_places_exactly() -> None:
    assert cost_text(Decimal("7.5")) == "7.500000"
    assert cost_text(Decimal("0.004905")) == "0.004905"
    assert cost_text(Decimal("123456789012.123456")) == "123456789012.123456"


def _total(key: str, seconds: int, usd: str) -> UsageTotal:
    costs = {"usd": Decimal(usd), "cny": Decimal(0), "nmt": Decimal(0)}
    return UsageTotal(key, seconds, seconds * 2, costs)


def _report(*rows: UsageRow) -> UsageReport:
    window = UsageWindow(datetime(2026, 3, 1, tzinfo=UTC), NOW)
    return UsageReport(window, GroupBy.ENDPOINT, "alice", rows, _total("total", 0, "0"))


def test_csv_has_a_header_and_the_rows_as_json_shows_them() -> None:
    text = render_csv(
        _report(
            UsageRow(_total("ep-1", 5400, "7.5"), name="llama, big", is_deleted=False),
            UsageRow(_total("ep-2", 10, "0.1"), name="old", is_deleted=True),
        )
    )
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == list(HEADER)
    assert lines[0] == [
        "key",
        "name",
        "is_deleted",
        "instance_seconds",
        "gpu_seconds",
        "cost_usd",
        "cost_cny",
        "cost_nmt",
    ]
    assert lines[1] == [
        "ep-1",
        "llama, big",
        "false",
        "5400",
        "10800",
        "7.500000",
        "0.000000",
        "0.000000",
    ]
    assert lines[2][:3] == ["ep-2", "old", "true"]
    assert len(lines) == 3


def test_csv_of_days_leaves_name_and_deleted_empty_and_nothing_is_a_header_alone() -> None:
    row = UsageRow(_total("2026-03-01", 60, "0.01"))
    assert list(csv.reader(io.StringIO(render_csv(_report(row)))))[1][:3] == [
        "2026-03-01",
        "",
        "",
    ]
    assert list(csv.reader(io.StringIO(render_csv(_report())))) == [list(HEADER)]


@pytest.mark.parametrize("name", ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx"])
def test_a_name_a_spreadsheet_would_run_is_quoted_as_text(name: str) -> None:
    text = render_csv(_report(UsageRow(_total("ep", 1, "0"), name=name, is_deleted=False)))
    assert list(csv.reader(io.StringIO(text)))[1][1] == "'" + name


@pytest.mark.parametrize(
    ("accept", "csv_wanted"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("text/csv", True),
        ("text/csv; charset=utf-8", True),
        ("TEXT/CSV", True),
        ("text/csv, application/json", True),
        ("application/json, text/csv", False),
        ("application/json;q=0.5, text/csv", True),
        ("text/csv;q=0", False),
        ("text/csv;q=bad", False),
    ],
)
def test_csv_is_answered_when_accept_prefers_it(accept: str | None, csv_wanted: bool) -> None:
    assert wants_csv(accept) is csv_wanted


def _rate(
    replica_id: str, endpoint_id: str, *, currency: str = "usd", gpus: int = 2
) -> ReplicaRate:
    return ReplicaRate(replica_id, endpoint_id, "alice", "H100", gpus, currency, Decimal("2.5"))


def test_metrics_totals_are_per_endpoint_flavor_and_currency_rounded_once() -> None:
    start = datetime(2026, 1, 15, 9, tzinfo=UTC)
    usage = Usage(
        records=[
            UsageRecord("r1", start, start + timedelta(seconds=3600)),
            UsageRecord("r1", start + timedelta(seconds=3600), start + timedelta(seconds=5400)),
            UsageRecord("r2", start, start + timedelta(seconds=10)),
            UsageRecord("r3", start, start + timedelta(seconds=1)),
        ],
        rates={
            "r1": _rate("r1", "ep-1"),
            "r2": _rate("r2", "ep-1"),
            "r3": _rate("r3", "ep-2", currency="nmt", gpus=0),
        },
    )
    totals = series_totals(usage)
    assert totals == {
        Series("ep-1", "alice", "H100", "usd"): SeriesTotal(5410, 10820, Decimal("7.513889")),
        Series("ep-2", "alice", "H100", "nmt"): SeriesTotal(1, 0, Decimal("0.000694")),
    }
    exposed = {
        (family.name, sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in usage_families(totals)
        for sample in family.samples
    }
    labels = (("endpoint_id", "ep-1"), ("flavor_id", "H100"), ("user_id", "alice"))
    assert exposed[("moorage_billed_seconds", "moorage_billed_seconds_total", labels)] == 5410
    assert (
        exposed[("moorage_billed_gpu_seconds", "moorage_billed_gpu_seconds_total", labels)] == 10820
    )
    cost_labels = tuple(sorted((*labels, ("currency", "usd"))))
    assert exposed[("moorage_cost", "moorage_cost_total", cost_labels)] == pytest.approx(7.513889)


def test_the_metrics_view_reads_the_store_at_most_every_few_seconds_and_never_goes_down() -> None:
    ticks = [0.0]
    reads: list[dict[Series, SeriesTotal]] = []
    one = Series("ep-1", "alice", "H100", "usd")
    two = Series("ep-2", "alice", "H100", "usd")
    view: Any = UsageMetricsView(None, None, max_age_s=5, monotonic=lambda: ticks[0])  # type: ignore[arg-type]
    answers = iter(
        [
            {one: SeriesTotal(10, 20, Decimal("1")), two: SeriesTotal(3, 6, Decimal("0.3"))},
            {one: SeriesTotal(9, 18, Decimal("0.9"))},  # read across a checkpoint: a dip
            {one: SeriesTotal(12, 24, Decimal("1.2"))},
        ]
    )

    def read() -> dict[Series, SeriesTotal]:
        reads.append({})
        return next(answers)

    view._read = read
    assert view.current()[one].seconds == 10
    ticks[0] = 4.9
    assert view.current()[one].seconds == 10
    assert len(reads) == 1, "a scrape within max_age_s reads nothing"
    ticks[0] = 5.0
    shown = view.current()
    assert shown[one] == SeriesTotal(10, 20, Decimal("1")), "never below the last value"
    assert shown[two].seconds == 3, "a series missing from one reading keeps its value"
    ticks[0] = 10.0
    assert view.current()[one] == SeriesTotal(12, 24, Decimal("1.2"))
    assert len(reads) == 3


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("|cmd", "'|cmd"),
        ("\ufeff=1+1", "'\ufeff=1+1"),  # a byte order mark first
        ("\u200b+1", "'\u200b+1"),  # a zero-width space first
        ("\u00a0-1", "'\u00a0-1"),  # a no-break space first
        ("\t=1", "'\t=1"),
        ("\u034f=1", "'\u034f=1"),  # a combining grapheme joiner
        ("\u3164=1", "'\u3164=1"),  # a Hangul filler
        ("\u2800=1", "'\u2800=1"),  # the blank Braille pattern
        ("chat-7b", "chat-7b"),
        ("a=b", "a=b"),
    ],
)
def test_a_name_a_spreadsheet_would_run_is_written_as_text(name: str, written: str) -> None:
    assert _cell(name) == written
