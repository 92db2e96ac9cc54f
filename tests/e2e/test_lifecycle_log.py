"""What ``moorage serve`` says while an endpoint is created, scaled, stopped and deleted:
one line per lifecycle event with its ids, no line per probe or per request, as text or
(``MOORAGE_LOG_FORMAT=json``) one JSON object per line, as ``moorage gateway`` writes
its own. The events API lists the same history, newest first."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import StandaloneGateway
from tests.support.server import ApiClient, MoorageServer, free_port, wait_for

# What this module checks is the log's lines, the same over either store.
STORES = ["sqlite"]

SERVER_COMMAND = "exec python3 -m http.server $PORT"


def _replicas_gone(admin: ApiClient, service_id: str) -> bool:
    return not admin.get(service_id)["endpoint_metadata"]["replicas"]


def _revisions(endpoint: dict[str, Any]) -> set[int]:
    return {r["revision"] for r in endpoint["endpoint_metadata"]["replicas"]}


def _run_lifecycle(server: MoorageServer) -> tuple[str, list[str]]:
    """Creates an endpoint, scales it to 2, rolls out revision 2, has revision 3 (which
    cannot run) rolled back, stops and deletes it; answers its id and the replicas of
    revision 2, which serve to the end."""
    admin = ApiClient(server.url, server.admin_token or "")
    service_id = admin.create(name="logged", deploy_metadata={"command": SERVER_COMMAND})[
        "service_id"
    ]
    path = f"/v1/inference-service/{service_id}"
    admin.wait_status(service_id, "available")
    scaled = admin.call("PUT", path, json={"resource_metadata": {"target_instance_number": "2"}})
    assert scaled.status_code == 200, scaled.text
    admin.wait_status(service_id, "available")

    rolled = admin.call("PUT", path, json={"deploy_metadata": {"env": {"REVISION": "2"}}})
    assert rolled.status_code == 200, rolled.text

    def rolled_out() -> dict[str, Any] | None:
        endpoint = admin.get(service_id)
        done = endpoint["status"] == "available" and _revisions(endpoint) == {2}
        return endpoint if done else None

    replicas = [
        r["replica_id"]
        for r in wait_for(rolled_out, timeout=60, what="revision 2 alone")["endpoint_metadata"][
            "replicas"
        ]
    ]
    assert len(replicas) == 2

    broken = admin.call(
        "PUT", path, json={"deploy_metadata": {"command": "echo missing weights >&2; exit 3"}}
    )
    assert broken.status_code == 200, broken.text
    seen: list[str] = []

    def rolled_back() -> bool:
        endpoint = admin.get(service_id)
        seen.append(endpoint["status"])
        return _revisions(endpoint) == {2} and "rolled back" in (endpoint["status_info"] or "")

    wait_for(rolled_back, timeout=60, interval=0.1, what="revision 3 to be rolled back")
    # Revision 2 served throughout: the endpoint never read unavailable.
    assert "unavailable" not in seen, seen

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
    failed = [e for e in listed if e["kind"] == "failed"]
    assert failed
    assert all(e["revision"] == 3 and e["reason"] == "exited" for e in failed)
    assert "exited with code 3" in failed[-1]["detail"]
    assert "missing weights" in failed[-1]["detail"]
    why_stopped = {
        (e["revision"], e["detail"])
        for e in listed
        if e["kind"] == "stopped" and e["replica_id"] is not None
    }
    assert why_stopped == {
        (1, "replaced by a newer revision"),
        (3, "its revision was rolled back"),
        (2, "the endpoint was stopped or deleted"),
    }
    # The endpoint's own changes, newest first, at the revision each left it on.
    assert [(e["kind"], e["revision"]) for e in listed if e["replica_id"] is None] == [
        ("stopped", 2),
        ("rolled_back", 2),
        ("rollout_begun", 3),
        ("rollout_finished", 2),
        ("rollout_begun", 2),
        ("scaled", 1),
        ("created", 1),
    ]
    first_page = admin.call("GET", f"/v1/inference-service/{service_id}/events?page_size=2")
    assert first_page.json()["event_list"] == listed[:2]
    assert first_page.json()["total"] == len(listed)

    deleted = admin.call("DELETE", f"/v1/inference-service/{service_id}")
    assert deleted.status_code == 200, deleted.text
    wait_for(
        lambda: "deleted: its replicas stop" in server.log(),
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

    assert count(service_id, "created: 1 replica of revision 1") == 1
    assert count(service_id, "scaled from 1 to 2 replicas") == 1
    assert count(service_id, "stopped: its replicas stop") == 1
    assert count(service_id, "deleted: its replicas stop") == 1
    assert count(service_id, "rollout of revision 2 begun (replaces revision 1)") == 1
    assert count(service_id, "rollout of revision 2 finished") == 1
    assert count(service_id, "rollout of revision 3 begun (replaces revision 2)") == 1
    assert count(service_id, "rollout of revision 3 finished") == 0
    assert count("WARNING", service_id, "revision 3 could not run and was rolled back") == 1
    assert count("WARNING", service_id, "(revision 3) failed (exited): exited with code 3") >= 1
    for replica_id in replicas:
        assert count(service_id, replica_id, "started at") == 1
        assert count(service_id, replica_id, "is ready") == 1
        assert count(service_id, replica_id, "stopped: the endpoint was stopped or deleted") == 1
    # Nothing else at INFO or above from the create to the delete: no line per probe,
    # none per request.
    log = server.log().splitlines()
    first = next(i for i, line in enumerate(log) if "created: 1 replica of" in line)
    last = next(i for i, line in enumerate(log) if "deleted: its replicas stop" in line)
    noise = [
        line
        for line in log[first:last]
        if line.startswith(("INFO", "WARNING", "ERROR")) and "moorage.lifecycle" not in line
    ]
    assert noise == [], noise


def test_json_log_has_one_object_per_line_with_the_ids(tmp_path: Path) -> None:
    server = _server(tmp_path, "json").start()
    try:
        service_id, replicas = _run_lifecycle(server)
    finally:
        server.stop()
    # Every line, the start-up banner included, is one JSON object.
    records: list[dict[str, Any]] = [json.loads(line) for line in server.log().splitlines()]
    assert records
    banner = next(r for r in records if r["message"].startswith("moorage on "))
    assert banner["url"] == server.url
    assert banner["logger"] == "moorage.serve"
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys()
    mine = [r for r in records if r.get("endpoint_id") == service_id]
    events = Counter(r["event"] for r in mine)

    assert events["endpoint.created"] == 1
    assert events["endpoint.scaled"] == 1
    assert events["endpoint.stopped"] == 1
    assert events["endpoint.deleted"] == 1
    assert events["rollout.begun"] == 2
    assert events["rollout.finished"] == 1
    assert events["rollout.rolled_back"] == 1
    assert {r["revision"] for r in mine if r["event"] == "rollout.rolled_back"} == {2}
    assert all(r.get("reason") == "exited" for r in mine if r["event"] == "replica.failed")
    for replica_id in replicas:
        of_replica = Counter(r["event"] for r in mine if r.get("replica_id") == replica_id)
        assert of_replica["replica.started"] == 1
        assert of_replica["replica.ready"] == 1
        assert of_replica["replica.stopped"] == 1
    assert all(r["logger"] == "moorage.lifecycle" for r in mine)
    assert all(r["level"] in ("INFO", "WARNING") for r in mine)


FORGED = "INFO:     moorage.lifecycle: endpoint 0123456789abcdef (svc) deleted by admin"
# A replica that prints a line of moorage's own log and a terminal escape, then fails.
FORGING_COMMAND = f"printf 'boom\\n{FORGED}\\n\\033[2J'; exit 3"


def _failed_lines(server: MoorageServer, service_id: str) -> list[str]:
    return [
        line
        for line in server.log().splitlines()
        if service_id in line and "failed (exited)" in line
    ]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_replicas_output_cannot_forge_a_log_line(tmp_path: Path, log_format: str) -> None:
    server = _server(tmp_path, log_format).start()
    try:
        admin = ApiClient(server.url, server.admin_token or "")
        service_id = admin.create(name="forger", deploy_metadata={"command": FORGING_COMMAND})[
            "service_id"
        ]
        failed = wait_for(
            lambda: _failed_lines(server, service_id),
            timeout=60,
            what="the replica's failure to be logged",
        )
        admin.call("DELETE", f"/v1/inference-service/{service_id}")
    finally:
        server.stop()
    log = server.log()
    assert "\x1b" not in log
    # The forged sentence is only ever inside a failure's own line, never a line alone.
    forged = [line for line in log.splitlines() if "(svc) deleted" in line]
    assert forged
    assert [line for line in forged if "failed (exited)" not in line] == []
    if log_format == "text":
        assert "boom\\n" + FORGED + "\\n\\x1b[2J" in failed[0]
    else:
        assert all("boom\n" + FORGED in json.loads(line)["message"] for line in forged)


@pytest.mark.parametrize("value", ["xml"])
def test_an_unknown_log_format_is_refused_naming_the_setting(tmp_path: Path, value: str) -> None:
    result = _server(tmp_path, value).cli("serve")

    assert result.returncode != 0
    assert "log_format" in result.stderr


def test_the_standalone_gateway_logs_json_when_told_to(tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    gateway = StandaloneGateway(
        tmp_path, control_plane=unreachable, token="t", env={"MOORAGE_LOG_FORMAT": "json"}
    )

    with gateway:
        line = wait_for(
            lambda: next((x for x in gateway.log().splitlines() if "cannot reach" in x), None),
            what="the gateway to say it cannot reach the control plane",
        )

    record = json.loads(line)
    assert record["level"] == "WARNING"
    assert record["logger"] == "moorage.gateway.standalone"
    assert unreachable in record["message"]
    text_records = [
        x
        for x in gateway.log().splitlines()
        if x.startswith(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    ]
    assert text_records == [], text_records
