"""The errors moorage answers with: one code per case, from one list, wherever it is said."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from moorage import refusals
from moorage.errors import ErrorCode, MoorageError

SAMPLE_ARGUMENTS: dict[str, Any] = {
    "service_id": "0" * 32,
    "reason": "ConnectionRefusedError",
    "problem": "invalid method",
    "max_bytes": 1024,
    "setting": "MOORAGE_GATEWAY_MAX_BODY_BYTES",
    "timeout_s": 1.5,
    "retry_after_s": 3,
    "sender": "the API",
    "what": "two Content-Length headers",
    "which": "idle",
    "flavor": "CPU",
    "wanted": 3,
    "free": 1,
    "capacity": 8,
    "max_queue": 100,
    "why": "its replica failed 3 times in a row",
    "field": "resource_metadata.scale_policy.max_instances",
}
REFUSALS = [
    (name, function)
    for name, function in inspect.getmembers(refusals, inspect.isfunction)
    if function.__module__ == refusals.__name__
]


def _call(function: Any) -> MoorageError:
    parameters = inspect.signature(function).parameters
    error = function(**{p: SAMPLE_ARGUMENTS[p] for p in parameters})
    assert isinstance(error, MoorageError)
    return error


@pytest.mark.parametrize(("name", "function"), REFUSALS, ids=[n for n, _ in REFUSALS])
def test_each_refusal_has_a_listed_code_and_a_status_that_fits(name: str, function: Any) -> None:
    error = _call(function)

    assert error.code in set(ErrorCode), f"{name}: code {error.code!r} is not an ErrorCode"
    assert 400 <= error.status_code < 600
    assert error.message


def test_a_refusal_that_asks_to_retry_says_when() -> None:
    assert refusals.no_ready_replica("ep").retry_after_s == 2
    assert refusals.overloaded("ep", 3).retry_after_s == 3
    assert refusals.queue_timeout("ep", 30).retry_after_s == 1
    assert refusals.endpoint_not_found("ep").retry_after_s is None


def test_codes_are_unique_words() -> None:
    values = [code.value for code in ErrorCode]

    assert len(values) == len(set(values))
    assert all(v.replace("_", "").isalpha() and v.islower() for v in values)


def test_running_out_of_capacity_is_a_503_a_request_beyond_the_flavor_is_not() -> None:
    shortage = refusals.insufficient_capacity("CPU", 3, 1, 8)

    assert (shortage.status_code, shortage.code) == (503, "insufficient_capacity")
    assert "resource_metadata.target_instance_number" in shortage.message
    assert "1 of its 8 is free" in shortage.message


def test_an_endpoint_id_is_quoted_short_however_long_it_is() -> None:
    message = refusals.endpoint_not_found("x" * 10_000).message

    assert len(message) < 150
    assert "x" * 64 + "..." in message
