"""What a user sees while a replica starts, through a real ``moorage serve``: an app
that listens on a fixed port instead of ``$PORT`` is named at once in
``status_info`` (both ports), and a replica that keeps failing reads ``failed`` with
the last output of its latest attempt only."""

from __future__ import annotations

import re
import time

from tests.support.server import ApiClient, MoorageServer, free_port, wait_for

STORES = ["sqlite"]


def test_an_app_on_the_wrong_port_is_named_within_5_s_of_listening(
    server: MoorageServer, alice: ApiClient
) -> None:
    """A user's replica: sandboxed, in a network namespace of its own."""
    _names_the_wrong_port(server, alice, work=("work",))


def test_an_unsandboxed_app_on_the_wrong_port_is_named_too(
    server: MoorageServer, admin: ApiClient
) -> None:
    """The admin's replica shares the host's network: only its own sockets count."""
    _names_the_wrong_port(server, admin, work=())


def _names_the_wrong_port(server: MoorageServer, alice: ApiClient, work: tuple[str, ...]) -> None:
    fixed = free_port()
    created = alice.create(
        name="wrong-port",
        deploy_metadata={
            # Listens a few seconds after it starts, on a port of its own choosing, and
            # notes (in its work directory) when it is about to.
            "command": "sleep 3; date +%s.%N > listening_at; "
            f"exec python3 -m http.server {fixed} --bind 127.0.0.1",
        },
    )
    service_id = created["service_id"]

    def waiting_note() -> re.Match[str] | None:
        info = alice.get(service_id)["status_info"] or ""
        return re.search(r"waiting for the app to listen on port (\d+) \(\$PORT\)", info)

    waiting = wait_for(waiting_note, timeout=30, what="the port the app must listen on")

    def wrong_port_note() -> str | None:
        info = alice.get(service_id)["status_info"] or ""
        return info if f"listens on {fixed}" in info else None

    note = wait_for(wrong_port_note, timeout=30, what="the wrong port named in status_info")
    seen_at = time.time()
    [replica] = alice.get(service_id)["endpoint_metadata"]["replicas"]
    marker = server.home.joinpath("replicas", replica["replica_id"], *work, "listening_at")
    assert seen_at - float(marker.read_text()) < 5, note
    assert f"the app listens on {fixed}, not on $PORT {waiting.group(1)}" in note
    assert int(waiting.group(1)) != fixed
    assert alice.get(service_id)["status"] == "initializing"
    alice.call("DELETE", f"/v1/inference-service/{service_id}")


def test_a_failing_replica_reads_failed_with_its_latest_output_only(alice: ApiClient) -> None:
    created = alice.create(
        name="boom",
        deploy_metadata={"command": "echo boom; exit 3"},
    )
    service_id = created["service_id"]

    def failed_twice() -> dict[str, object] | None:
        endpoint = alice.get(service_id)
        info = endpoint["status_info"] or ""
        return endpoint if "failed 2 times" in info or "failed 3 times" in info else None

    failing = wait_for(failed_twice, timeout=30, what="two failures in a row")
    info = str(failing["status_info"])
    assert "last output: boom" in info, info
    assert "boom\\nboom" not in info, info
    assert "boom\nboom" not in info, info

    def reads_failed() -> bool:
        replicas = alice.get(service_id)["endpoint_metadata"]["replicas"]
        return bool(replicas) and replicas[0]["state"] == "failed"

    wait_for(reads_failed, timeout=10, what="the replica to read failed")
    replica = alice.get(service_id)["endpoint_metadata"]["replicas"][0]
    assert replica["last_failure"].endswith("last output: boom"), replica
    alice.call("DELETE", f"/v1/inference-service/{service_id}")
