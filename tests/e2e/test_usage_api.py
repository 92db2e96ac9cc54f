"""``GET /v1/usage`` and the usage counters on ``/metrics``, against a real ``moorage
serve``: an endpoint on a priced flavor runs a few seconds and stops, and its usage
matches the time the test measured from outside, to the second, in JSON, in CSV, by
endpoint, day, flavor and user; a user sees only their own, the admin everyone's.

The flavor costs 36 usd per GPU-hour, 0.01 usd per GPU-second, so each second billed
is a readable cent.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_gpus import body, flavors
from tests.support.metrics import metric
from tests.support.server import ApiClient, wait_for

SERVER_ENV = {
    "MOORAGE_FLAVORS": str(Path(__file__).with_name("billing_flavors.toml")),
    "MOORAGE_SANDBOX": "off",
    "MOORAGE_METERING_INTERVAL_S": "1",
}
SERVES = "exec python3 -m http.server $PORT"
PER_GPU_SECOND = Decimal("0.01")


@dataclass(frozen=True)
class Run:
    """An endpoint that ran and stopped, and what the test measured of it."""

    service_id: str
    name: str
    user_id: str
    flavor_id: str
    least_s: float  # from both replicas' ready to the stop being asked
    most_s: float  # from the create to the replicas gone
    window: dict[str, str]


def _replicas(client: ApiClient, service_id: str) -> list[Any]:
    got = client.call("GET", f"/v1/inference-service/{service_id}").json()
    replicas: list[Any] = got["endpoint_metadata"]["replicas"]
    return replicas


@pytest.fixture(scope="module")
def run(alice: ApiClient) -> Iterator[Run]:
    priced = flavors(alice)["PRICED_GPU"]
    made = body(priced["flavor_id"], "usage-run", 1)
    made["deploy_metadata"]["command"] = SERVES
    created_at = time.monotonic()
    created = alice.call("POST", "/v1/inference-service", json=made)
    assert created.status_code == 200, created.text
    endpoint = created.json()
    service_id = endpoint["service_id"]
    try:
        ready = wait_for(
            lambda: (
                alice.get(service_id)["endpoint_metadata"]["ready_replicas"] == 1
                and time.monotonic()
            ),
            timeout=60,
            what="a ready replica",
        )
        time.sleep(3)
        stop_at = time.monotonic()
        stopped = alice.call("POST", f"/v1/inference-service/{service_id}/stop")
        assert stopped.status_code == 200, stopped.text
        gone = wait_for(
            lambda: not _replicas(alice, service_id) and time.monotonic(),
            timeout=30,
            what="its replica gone",
        )
        today = datetime.now(UTC)
        window = {
            "from": (today - timedelta(days=1)).isoformat(),
            "to": (today + timedelta(days=1)).isoformat(),
        }
        yield Run(
            service_id,
            endpoint["name"],
            endpoint["user_id"],
            priced["flavor_id"],
            least_s=stop_at - ready,
            most_s=gone - created_at,
            window=window,
        )
    finally:
        alice.call("DELETE", f"/v1/inference-service/{service_id}")


def _usage(client: ApiClient, **params: str) -> dict[str, Any]:
    got = client.call("GET", "/v1/usage", params=params)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("application/json")
    answer: dict[str, Any] = got.json()
    return answer


def _cost(seconds: int) -> str:
    return f"{seconds * PER_GPU_SECOND:.6f}"


def test_usage_matches_the_time_the_endpoint_ran(alice: ApiClient, run: Run) -> None:
    usage = _usage(alice, **run.window)
    assert usage["group_by"] == "endpoint"
    assert usage["user_id"] == run.user_id
    [row] = usage["rows"]
    assert row["key"] == run.service_id
    assert row["name"] == run.name
    assert row["is_deleted"] is False
    seconds = row["instance_seconds"]
    # Placed between the create and ready, stopped between the stop and gone; billed per
    # whole second of the clock, so within a second of that.
    assert run.least_s - 1 <= seconds <= run.most_s + 1, (seconds, run)
    assert row["gpu_seconds"] == seconds, "one GPU"
    assert row["cost"] == {"usd": _cost(seconds), "cny": "0.000000", "nmt": "0.000000"}
    assert usage["totals"] == {
        "instance_seconds": seconds,
        "gpu_seconds": seconds,
        "cost": row["cost"],
    }
    asked = datetime.fromisoformat(run.window["from"])
    assert usage["from"] == asked.strftime("%Y-%m-%d %H:%M:%S"), "UTC, to the second below"
    # Stopped: a later read (after more checkpoints) bills no more.
    time.sleep(1.5)
    assert _usage(alice, **run.window)["rows"] == [row]


def test_csv_has_the_same_rows_as_json(alice: ApiClient, run: Run) -> None:
    for group_by in ("endpoint", "day", "flavor", "user"):
        params = {**run.window, "group_by": group_by}
        as_json = _usage(alice, **params)["rows"]
        got = alice.call("GET", "/v1/usage", params=params, headers={"Accept": "text/csv"})
        assert got.status_code == 200, got.text
        assert got.headers["content-type"].startswith("text/csv")
        header, *lines = list(csv.reader(io.StringIO(got.text)))
        assert header == [
            "key",
            "name",
            "is_deleted",
            "instance_seconds",
            "gpu_seconds",
            "cost_usd",
            "cost_cny",
            "cost_nmt",
        ]
        assert lines == [
            [
                row["key"],
                row["name"] or "",
                "" if row["is_deleted"] is None else str(row["is_deleted"]).lower(),
                str(row["instance_seconds"]),
                str(row["gpu_seconds"]),
                row["cost"]["usd"],
                row["cost"]["cny"],
                row["cost"]["nmt"],
            ]
            for row in as_json
        ], group_by


def test_usage_groups_by_day_flavor_and_user(alice: ApiClient, run: Run) -> None:
    by_endpoint = _usage(alice, **run.window)["totals"]
    by_day = _usage(alice, **run.window, group_by="day")
    days = {row["key"] for row in by_day["rows"]}
    assert days <= {
        (datetime.now(UTC) - timedelta(days=1)).date().isoformat(),
        datetime.now(UTC).date().isoformat(),
    }
    assert sum(row["instance_seconds"] for row in by_day["rows"]) == by_endpoint["instance_seconds"]
    assert all(row["name"] is None and row["is_deleted"] is None for row in by_day["rows"])
    [flavor] = _usage(alice, **run.window, group_by="flavor")["rows"]
    assert flavor["key"] == run.flavor_id
    [user] = _usage(alice, **run.window, group_by="user")["rows"]
    assert user["key"] == run.user_id
    for row in (flavor, user):
        assert row["instance_seconds"] == by_endpoint["instance_seconds"]
        assert row["cost"] == by_endpoint["cost"]
    # Rows read by name: an invoice needs no second lookup.
    assert flavor["name"] == "PRICED_GPU"
    assert user["name"] == "alice"


def test_a_user_sees_only_their_own_usage_and_the_admin_everyones(
    alice: ApiClient, bob: ApiClient, admin: ApiClient, run: Run
) -> None:
    mine = _usage(alice, **run.window)["rows"]
    assert _usage(bob, **run.window)["rows"] == []
    refused = bob.call("GET", "/v1/usage", params={**run.window, "user_id": run.user_id})
    assert refused.status_code == 403, refused.text
    assert refused.json() == {
        "code": "forbidden",
        "message": "reading another user's usage needs the admin token",
    }
    assert run.service_id not in refused.text
    everyone = _usage(admin, **run.window)
    assert everyone["user_id"] is None
    assert mine[0] in everyone["rows"]
    assert _usage(admin, **run.window, user_id=run.user_id)["rows"] == mine
    # A mistyped id is not a user who spent nothing.
    unknown = admin.call("GET", "/v1/usage", params={**run.window, "user_id": "nosuch"})
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["message"] == "no user 'nosuch'; GET /v1/users lists them"


def test_a_window_in_an_early_year_is_answered(alice: ApiClient) -> None:
    for window, written in (
        ({"from": "0001-01-01", "to": "0001-12-31"}, "0001-01-01 00:00:00"),
        (
            {"from": "0999-12-31T23:00:00", "to": "1000-01-01T01:00:00", "group_by": "day"},
            "0999-12-31 23:00:00",
        ),
    ):
        answer = _usage(alice, **window)
        assert (answer["from"], answer["rows"]) == (written, [])
        as_csv = alice.call("GET", "/v1/usage", params=window, headers={"Accept": "text/csv"})
        assert as_csv.status_code == 200, as_csv.text
        group = window.get("group_by", "endpoint")
        assert as_csv.headers["content-disposition"] == (
            f'attachment; filename="usage-by-{group}-{window["from"][:10]}-{window["to"][:10]}.csv"'
        )


@pytest.mark.parametrize(
    ("params", "starts"),
    [
        ({"from": "last week"}, "from: must be an ISO 8601 date (2026-01-31) or timestamp"),
        ({"to": "2026-02-30"}, "to: must be an ISO 8601 date (2026-01-31) or timestamp"),
        (
            {"from": "2026-02-01", "to": "2026-01-01"},
            "to: must be after from (2026-02-01 00:00:00 UTC), got 2026-01-01",
        ),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "to: must be at most 366 days after from"),
        ({"group_by": "week"}, "group_by: Input should be 'endpoint', 'day', 'flavor' or 'user'"),
        ({"from": "2" * 65}, "from: String should have at most 64 characters"),
        (
            {"from": "2026-12-03T10:44:00 01:00"},
            "from: must be an ISO 8601 date (2026-01-31) or timestamp (2026-01-31T12:00:00Z),"
            " got '2026-12-03T10:44:00 01:00'; write a + in a URL's query as %2B",
        ),
    ],
)
def test_a_bad_window_or_group_is_refused_naming_the_parameter(
    alice: ApiClient, params: dict[str, str], starts: str
) -> None:
    refused = alice.call("GET", "/v1/usage", params=params)
    assert refused.status_code == 422, refused.text
    error = refused.json()
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(starts), error["message"]


def test_metrics_count_the_billed_seconds_gpu_seconds_and_cost(
    alice: ApiClient, admin: ApiClient, run: Run
) -> None:
    seconds = _usage(alice, **run.window)["rows"][0]["instance_seconds"]
    labels = {"endpoint_id": run.service_id, "user_id": run.user_id, "flavor_id": run.flavor_id}

    def scraped() -> str | None:
        got = admin.call("GET", "/metrics")
        assert got.status_code == 200, got.text
        shown = metric(got.text, "moorage_billed_seconds_total", **labels)
        return got.text if shown == seconds else None

    # The counters are read from the store at most every few seconds.
    text = wait_for(scraped, timeout=15, interval=0.5, what=f"{seconds} s on /metrics")
    assert metric(text, "moorage_billed_gpu_seconds_total", **labels) == seconds
    cost = metric(text, "moorage_cost_total", **labels, currency="usd")
    assert cost == pytest.approx(float(_cost(seconds)))
    assert alice.call("GET", "/metrics").status_code == 403


def test_a_deleted_endpoint_keeps_its_usage(alice: ApiClient, run: Run) -> None:
    before = _usage(alice, **run.window)["rows"]
    deleted = alice.call("DELETE", f"/v1/inference-service/{run.service_id}")
    assert deleted.status_code == 200, deleted.text
    [row] = _usage(alice, **run.window)["rows"]
    assert row == {**before[0], "is_deleted": True}
