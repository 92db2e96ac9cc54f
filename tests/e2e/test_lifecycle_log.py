"""What ``moorage serve`` says while an endpoint is created, scaled, stopped and deleted:
one line per lifecycle event with its ids, no line per probe or per request, as text or
(``MOORAGE_LOG_FORMAT=json``) one JSON object per line. The events API lists the same
history, newest first."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ApiClient, MoorageServer, wait_for

SERVER_COMMAND = "exec python3 -m http.server $PORT"


def _replicas_gone(admin: ApiClient, service_id: str) -> bool:
    return not admin.get(service_id)["endpoint_metadata"]["replicas"]


def _run_lifecycle(server: MoorageServer) -> tuple[str, list[str]]:
    """Creates, scales to 2, stops and deletes an endpoint; answers its id and replicas."""
    admin = ApiClient(server.url, server.admin_token or "")
    service_id = admin.create(name="logged", deploy_metadata={"command": SERVER_COMMAND})[
        "service_id"
    ]
    admin.wait_status(service_id, "available")
    scaled = admin.call(
        "PUT",
        f"/v1/inference-service/{service_id}",
        json={"resource_metadata": {"target_instance_number": "2"}},
    )
    assert scaled.status_code == 200, scaled.text
    replicas = [
        r["replica_id"]
        for r in admin.wait_status(service_id, "available")["endpoint_metadata"]["replicas"]
    ]
    for _ in range(3):  # a few probe periods: none of them may be logged
        assert admin.gateway(service_id).status_code == 200
    wait_for(lambda: len(replicas) == 2, timeout=5, what="two replicas")

    stopped = admin.call("POST", f"/v1/inference-service/{service_id}/stop")
    assert stopped.status_code == 200, stopped.text
    wait_for(lambda: _replicas_gone(admin, service_id), timeout=60, what="replicas to stop")

    events = admin.call("GET", f"/v1/inference-service/{service_id}/events?page_size=100")
    assert events.status_code == 200, events.text
    listed = events.json()["event_list"]
    assert [e["kind"] for e in listed if e["replica_id"] == replicas[0]] == [
        "stopped",
        "unready",
        "ready",
        "started",
        "requested",
    ]
    assert listed[0]["kind"] == "stopped"
    assert "the endpoint was stopped or deleted" in listed[0]["message"]
    first_page = admin.call("GET", f"/v1/inference-service/{service_id}/events?page_size=2")
    assert first_page.json()["event_list"] == listed[:2]
    assert first_page.json()["total"] == len(listed)

    deleted = admin.call("DELETE", f"/v1/inference-service/{service_id}")
    assert deleted.status_code == 200, deleted.text
    wait_for(
        lambda: "deleted" in server.log().split(service_id, 1)[-1],
        timeout=10,
        what="the delete to be logged",
    )
    return service_id, replicas


def _server(tmp_path: Path, log_format: str) -> MoorageServer:
    return MoorageServer(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'moorage.db'}",
        extra_env={"MOORAGE_LOG_FORMAT": log_format},
    )


def test_text_log_has_one_line_per_lifecycle_event(tmp_path: Path) -> None:
    server = _server(tmp_path, "text").start()
    try:
        service_id, replicas = _run_lifecycle(server)
    finally:
        server.stop()
    lines = [line for line in server.log().splitlines() if "moorage.lifecycle" in line]

    def count(*parts: str) -> int:
        return sum(all(p in line for p in parts) for line in lines)

    assert count(service_id, "created: 1 replica(s) of revision 1") == 1
    assert count(service_id, "scaled from 1 to 2 replica(s)") == 1
    assert count(service_id, "stopped: its replicas stop") == 1
    assert count(service_id, "deleted: its replicas stop") == 1
    for replica_id in replicas:
        assert count(service_id, replica_id, "started at") == 1
        assert count(service_id, replica_id, "is ready") == 1
        assert count(service_id, replica_id, "stopped: the endpoint was stopped or deleted") == 1
    # Nothing else at INFO or above after start-up: no line per probe, none per request.
    startup = ("alembic.", "moorage.server:", "moorage.serving:")
    noise = [
        line
        for line in server.log().splitlines()
        if line.startswith(("INFO", "WARNING", "ERROR"))
        and "moorage.lifecycle" not in line
        and not any(name in line for name in startup)
    ]
    assert noise == [], noise


def test_json_log_has_one_object_per_line_with_the_ids(tmp_path: Path) -> None:
    server = _server(tmp_path, "json").start()
    try:
        service_id, replicas = _run_lifecycle(server)
    finally:
        server.stop()
    records: list[dict[str, Any]] = [
        json.loads(line) for line in server.log().splitlines() if line.startswith("{")
    ]
    assert records
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys()
    mine = [r for r in records if r.get("endpoint_id") == service_id]
    events = Counter(r["event"] for r in mine)

    assert events["endpoint.created"] == 1
    assert events["endpoint.scaled"] == 1
    assert events["endpoint.stopped"] == 1
    assert events["endpoint.deleted"] == 1
    for replica_id in replicas:
        of_replica = Counter(r["event"] for r in mine if r.get("replica_id") == replica_id)
        assert of_replica["replica.started"] == 1
        assert of_replica["replica.ready"] == 1
        assert of_replica["replica.stopped"] == 1
    assert all(r["logger"] == "moorage.lifecycle" for r in mine)
    assert all(r["level"] in ("INFO", "WARNING") for r in mine)
    # No record in the text format: the banner (not a log record) is all that is not JSON.
    text_records = [
        line
        for line in server.log().splitlines()
        if line.startswith(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    ]
    assert text_records == [], text_records


@pytest.mark.parametrize("value", ["xml"])
def test_an_unknown_log_format_is_refused_naming_the_setting(tmp_path: Path, value: str) -> None:
    result = _server(tmp_path, value).cli("serve")

    assert result.returncode != 0
    assert "log_format" in result.stderr
