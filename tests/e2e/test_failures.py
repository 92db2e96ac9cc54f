"""Replicas that cannot serve make the endpoint ``unavailable`` with words a user can act on."""

from __future__ import annotations

from tests.support.server import FLASK_COMMAND, ApiClient, processes_with_env, wait_for

SERVER_ENV = {"MOORAGE_READY_TIMEOUT_S": "3"}


def test_a_crashing_command_makes_the_endpoint_unavailable(alice: ApiClient) -> None:
    endpoint = alice.create(
        name="crasher", deploy_metadata={"command": "echo 'model file missing' >&2; exit 3"}
    )
    service_id = endpoint["service_id"]
    failed = alice.wait_status(service_id, "unavailable", timeout=60)
    assert "exited with code 3" in failed["status_info"]
    assert "model file missing" in failed["status_info"]
    assert "deploy_metadata" in failed["status_info"]  # says what to fix
    alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_an_app_that_never_listens_is_unavailable_after_the_timeout(alice: ApiClient) -> None:
    service_id = alice.create(name="silent", deploy_metadata={"command": "sleep 300"})["service_id"]
    failed = alice.wait_status(service_id, "unavailable", timeout=30)
    assert "$PORT" in failed["status_info"]
    alice.call("DELETE", f"/v1/inference-service/{service_id}")
    wait_for(lambda: not processes_with_env("MOORAGE_ENDPOINT_ID", service_id), what="cleanup")


def test_fixing_the_command_recovers_the_endpoint(alice: ApiClient) -> None:
    service_id = alice.create(name="fixme", deploy_metadata={"command": "exit 1"})["service_id"]
    alice.wait_status(service_id, "unavailable", timeout=60)
    fixed = alice.call(
        "PUT",
        f"/v1/inference-service/{service_id}",
        json={"deploy_metadata": {"command": FLASK_COMMAND}},
    )
    assert fixed.status_code == 200, fixed.text
    recovered = alice.wait_status(service_id, "available", timeout=60)
    assert recovered["status_info"] is None
    assert alice.gateway(service_id).status_code == 200
    alice.call("DELETE", f"/v1/inference-service/{service_id}")
