"""What ``moorage gateway --routes FILE`` says about a file it cannot serve: the file,
the field and what the field allows, in one message (the CLI prints it and exits 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from moorage.errors import MoorageError
from moorage.gateway.standalone import read_routes_file

GOOD = {"service_id": "chat", "tokens": ["t"], "replicas": ["127.0.0.1:9001"]}


def refusal(tmp_path: Path, body: Any) -> str:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(body))
    with pytest.raises(MoorageError) as refused:
        read_routes_file(path)
    assert str(path) in refused.value.message, "the message does not name the file"
    return refused.value.message


def test_a_value_out_of_bounds_names_the_field_and_its_bound(tmp_path: Path) -> None:
    body = {"endpoints": [GOOD, {**GOOD, "gateway_metadata": {"retries": 11}}]}

    message = refusal(tmp_path, body)

    assert "endpoints[1].gateway_metadata.retries: should be less than or equal to 10" in message


def test_an_unknown_name_lists_the_names_allowed(tmp_path: Path) -> None:
    body = {"endpoints": [{**GOOD, "status": "paused", "gateway_metadata": {"policy": "x"}}]}

    message = refusal(tmp_path, body)

    assert "endpoints[0].status: should be 'running' or 'stopped', not 'paused'" in message
    assert "endpoints[0].gateway_metadata.policy: should be 'least_outstanding'" in message


def test_a_misspelt_key_is_refused_with_the_keys_allowed(tmp_path: Path) -> None:
    body = {"endpoints": [{"service_id": "chat", "tokens": ["t"], "replica": ["h:1"]}]}

    message = refusal(tmp_path, body)

    assert "endpoints[0].replica: unknown key; give one of service_id, tokens" in message
    assert "replicas" in message


def test_a_replica_is_an_address_or_an_object(tmp_path: Path) -> None:
    body = {"endpoints": [{**GOOD, "replicas": ["h:1", {"replica_id": "r", "address": 1}, 5]}]}

    message = refusal(tmp_path, body)

    assert "endpoints[0].replicas[1].address: should be a valid string, not 1" in message
    assert 'endpoints[0].replicas[2]: give "host:port" or {"replica_id"' in message
    assert "replicas[0]" not in message


def test_a_file_that_is_not_a_table_says_what_one_looks_like(tmp_path: Path) -> None:
    message = refusal(tmp_path, [GOOD])

    assert 'give an object; a route table reads {"endpoints": [{"service_id"' in message


def test_a_good_file_is_served_as_written(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    replicas = ["127.0.0.1:9001", {"replica_id": "big", "address": "127.0.0.1:9002"}]
    path.write_text(json.dumps({"endpoints": [{**GOOD, "replicas": replicas}]}))

    route = read_routes_file(path).current.endpoints["chat"]

    assert [(r.replica_id, r.address) for r in route.replicas] == [
        ("r0", "127.0.0.1:9001"),
        ("big", "127.0.0.1:9002"),
    ]
