"""What an operator alerts on as a user's spending nears and reaches its limit, from a
real ``moorage serve``: the budget gauges on ``/metrics`` (limit, warning, spend and
state) and one log line each time a budget's state changes, none per check.

Same flavor and limit as ``test_budgets.py``: 0.01 usd a second for one GPU, a
0.1 usd limit warning at 0.05, checked every second.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.test_budgets import SERVER_ENV as BUDGET_SERVER_ENV
from tests.e2e.test_budgets import _priced, _user_id
from tests.support.server import ApiClient, MoorageServer, wait_for

SERVER_ENV = BUDGET_SERVER_ENV
STORES = ["sqlite"]  # what is shown, not how it is stored: test_budgets.py runs both


@pytest.fixture
def clean(alice: ApiClient) -> Iterator[None]:
    yield
    listed = alice.call("GET", "/v1/inference-service", params={"page_size": 100}).json()
    for endpoint in listed["service_list"]:
        alice.call("DELETE", f"/v1/inference-service/{endpoint['service_id']}")


def _gauge(admin: ApiClient, name: str, user_id: str) -> float | None:
    text = admin.call("GET", "/metrics").text
    pattern = rf'^{name}\{{currency="usd",period="month",user_id="{user_id}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


@pytest.mark.usefixtures("clean")
def test_budget_gauges_and_one_log_line_per_change(
    server: MoorageServer, admin: ApiClient, alice: ApiClient
) -> None:
    alice_id = _user_id(alice)
    put = admin.call(
        "PUT", f"/v1/users/{alice_id}/budgets/usd", json={"limit": "0.1", "warning": "0.05"}
    )
    assert put.status_code == 200, put.text
    assert alice.call("GET", "/metrics").status_code == 403, "gauges are the admin's"

    created = alice.call("POST", "/v1/inference-service", json=_priced(alice, "alerting"))
    assert created.status_code == 200, created.text
    alice.wait_status(created.json()["service_id"], "stopped", timeout=60)

    state = wait_for(
        lambda: _gauge(admin, "moorage_budget_state", alice_id) == 2.0,
        timeout=15,
        what="moorage_budget_state 2 (exceeded)",
    )
    assert state
    assert _gauge(admin, "moorage_budget_limit", alice_id) == 0.1
    assert _gauge(admin, "moorage_budget_warning", alice_id) == 0.05
    spent = _gauge(admin, "moorage_budget_spent", alice_id)
    assert spent is not None
    assert spent >= 0.1

    log = server.log()
    warned = [line for line in log.splitlines() if f"user {alice_id}: spending near" in line]
    reached = [line for line in log.splitlines() if f"user {alice_id}: spending limit" in line]
    assert len(warned) == 1, warned
    assert len(reached) == 1, reached
    assert "0.1 usd limit" in reached[0]
