"""Another user's endpoint id answers exactly like an unknown one on every API route:
same status, same body (but for the id it names), and at once, so the API is no oracle
for which ids exist."""

from __future__ import annotations

import statistics
import time

import pytest
import requests

from tests.support.server import ApiClient

UNKNOWN = "0123456789abcdef0123456789abcdef"
ROUTES = [
    ("GET", "/v1/inference-service/{id}", None),
    ("PUT", "/v1/inference-service/{id}", {"description": "mine now"}),
    ("POST", "/v1/inference-service/{id}/stop", None),
    ("POST", "/v1/inference-service/{id}/start", None),
    ("GET", "/v1/inference-service/{id}/logs", None),
    ("GET", "/v1/inference-service/{id}/logs?follow=true&tail=1", None),
    ("DELETE", "/v1/inference-service/{id}", None),
]
ROUNDS = 9


@pytest.fixture(scope="module")
def alices_endpoint(alice: ApiClient) -> str:
    return str(alice.create(name="target", deploy_metadata={"command": "sleep 600"})["service_id"])


def _timed(
    client: ApiClient, method: str, path: str, body: object
) -> tuple[float, requests.Response]:
    start = time.monotonic()
    response = client.call(method, path, json=body)
    return time.monotonic() - start, response


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_foreign_and_unknown_ids_answer_alike_and_at_once(
    alice: ApiClient, bob: ApiClient, alices_endpoint: str, method: str, path: str, body: object
) -> None:
    before = alice.get(alices_endpoint)
    foreign_times, unknown_times = [], []
    for _ in range(ROUNDS):
        elapsed, foreign = _timed(bob, method, path.format(id=alices_endpoint), body)
        foreign_times.append(elapsed)
        elapsed, unknown = _timed(bob, method, path.format(id=UNKNOWN), body)
        unknown_times.append(elapsed)
        assert foreign.status_code == unknown.status_code == 404, foreign.text
        assert foreign.json() == {
            k: v.replace(UNKNOWN, alices_endpoint) for k, v in unknown.json().items()
        }
        assert set(foreign.headers) - {"date"} == set(unknown.headers) - {"date"}
    foreign_median = statistics.median(foreign_times)
    unknown_median = statistics.median(unknown_times)
    assert foreign_median < 1.0, foreign_times
    assert unknown_median < 1.0, unknown_times
    assert abs(foreign_median - unknown_median) < 0.1, (foreign_times, unknown_times)
    after = alice.get(alices_endpoint)
    assert (after["description"], after["status"] == "stopped", after["is_deleted"]) == (
        before["description"],
        before["status"] == "stopped",
        False,
    )


def test_a_very_long_id_is_not_echoed_back(bob: ApiClient) -> None:
    response = bob.call("GET", "/v1/inference-service/" + "a" * 4000)
    assert response.status_code in (404, 414), response.text[:200]
    assert len(response.content) < 1024
