"""What ``status`` and ``status_info`` tell a user through a real ``moorage serve``, where
they could mislead: an app in a container that listens on 127.0.0.1 (named within 5 s
of listening, while the process runtime's sandbox reaches it and serves), an app that
does not listen yet (one steady "waiting" however the failed connection reads), an
endpoint that still serves while one replica cannot start (``available``, naming
it), advice that fits each failure, and one log line per replica stop."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.server import ApiClient, MoorageServer, wait_for

STORES = ["sqlite"]
RUNTIMES = ["process", "docker"]

ENDPOINTS = "/v1/inference-service"
# Prints when it is about to listen (seconds since the epoch), then listens on
# 127.0.0.1 alone.
LOOPBACK_APP = (
    "sleep 3; python3 -c 'import time; print(\"listening_at\", time.time(), flush=True)'; "
    "exec python3 -m http.server --bind 127.0.0.1 $PORT"
)
WAITING = re.compile(r"^waiting for the app to listen on port (\d+) \(\$PORT\) \((\d+) s\);")


@contextmanager
def _endpoint(client: ApiClient, name: str, **overrides: object) -> Iterator[str]:
    service_id = str(client.create(name=name, **overrides)["service_id"])
    try:
        yield service_id
    finally:
        client.call("DELETE", f"{ENDPOINTS}/{service_id}")


def _info(client: ApiClient, service_id: str) -> str:
    return str(client.get(service_id)["status_info"] or "")


def test_an_app_on_loopback_is_named_on_docker_and_serves_on_the_process_runtime(
    server: MoorageServer, alice: ApiClient
) -> None:
    deploy = {"command": LOOPBACK_APP, "port": 8000}
    with _endpoint(alice, "loopback", deploy_metadata=deploy) as service_id:
        if server.runtime == "process":
            # The sandbox's bridge connects to 127.0.0.1 inside the replica's namespace.
            served = alice.wait_status(service_id, "available", timeout=60)
            assert "inside its container" not in str(served["status_info"] or "")
            assert alice.gateway(service_id).status_code == 200
            return

        def named() -> str | None:
            info = _info(alice, service_id)
            return info if "inside its container" in info else None

        note = wait_for(named, timeout=90, interval=0.1, what="the loopback address named")
        seen_at = time.time()
        logs = alice.call("GET", f"{ENDPOINTS}/{service_id}/logs").text
        marked = re.search(r"listening_at ([0-9.]+)", logs)
        assert marked is not None, logs
        assert seen_at - float(marked.group(1)) < 5, note
        assert note.startswith(
            "the app listens on 127.0.0.1:8000 inside its container, where nothing outside "
            "it can reach: bind 0.0.0.0 (all addresses) on $PORT (deploy_metadata.command)"
        ), note
        assert alice.get(service_id)["status"] == "initializing"


def test_an_app_not_listening_yet_reads_waiting_with_a_steady_time(
    server: MoorageServer, alice: ApiClient
) -> None:
    """Probed five times a second for 12 s: not one read says anything but waiting,
    and the time waited never goes back."""
    deploy = {"command": "exec sleep 600", "readiness_probe": {"period_s": 0.2}}
    with _endpoint(alice, "not-yet", deploy_metadata=deploy) as service_id:
        first = wait_for(
            lambda: WAITING.match(_info(alice, service_id)), timeout=60, what="waiting to listen"
        )
        reads: list[str] = []
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            reads.append(_info(alice, service_id))
            time.sleep(0.05)
    matched = [WAITING.match(r) for r in reads]
    assert all(matched), [r for r, m in zip(reads, matched, strict=True) if not m]
    waited = [int(m.group(2)) for m in matched if m]
    assert waited == sorted(waited), waited
    assert waited[-1] >= waited[0] + 10, waited
    assert {m.group(1) for m in matched if m} == {first.group(1)}


def test_an_endpoint_that_still_serves_is_available_naming_the_replica_that_cannot_start(
    server: MoorageServer, alice: ApiClient
) -> None:
    stored = alice.call("PUT", "/v1/secrets/HF_TOKEN", json={"value": "hf-test-value"})
    assert stored.status_code == 200, stored.text
    deploy = {"secrets": ["HF_TOKEN"]}
    with _endpoint(alice, "one-serves", deploy_metadata=deploy) as service_id:
        alice.wait_status(service_id, "available", timeout=90)
        deleted = alice.call("DELETE", "/v1/secrets/HF_TOKEN")
        assert deleted.status_code == 200, deleted.text
        scaled = alice.call(
            "PUT",
            f"{ENDPOINTS}/{service_id}",
            json={"resource_metadata": {"target_instance_number": 2}},
        )
        assert scaled.status_code == 200, scaled.text

        def failing() -> dict[str, object] | None:
            endpoint = alice.get(service_id)
            return endpoint if "no secret named HF_TOKEN" in str(endpoint["status_info"]) else None

        seen: list[str] = []

        def settled() -> dict[str, object] | None:
            endpoint = failing()
            seen.append(str(alice.get(service_id)["status"]))
            return endpoint

        endpoint = wait_for(settled, timeout=60, interval=0.1, what="the failing replica named")
        for _ in range(20):  # it keeps reading so while the replica is retried
            seen.append(str(alice.get(service_id)["status"]))
            assert alice.gateway(service_id).status_code == 200
            time.sleep(0.1)
        info = str(endpoint["status_info"])
        assert endpoint["status"] == "available", endpoint
        assert "unavailable" not in seen, seen
        assert info.startswith("1 of 2 replicas serves; 1 cannot run: replica "), info
        assert "It never started, so it has no logs" in info, info
        assert "Check deploy_metadata (command, port)" not in info, info


def test_an_image_that_cannot_be_pulled_is_not_sent_to_logs(
    server: MoorageServer, alice: ApiClient
) -> None:
    if server.runtime != "docker":
        pytest.skip("the process runtime pulls no image")
    deploy = {"image_url": "localhost:1/moorage-test/missing:1"}
    with _endpoint(alice, "no-image", deploy_metadata=deploy) as service_id:
        endpoint = alice.wait_status(service_id, "unavailable", timeout=90)
    info = str(endpoint["status_info"])
    assert "cannot pull image" in info, info
    assert "It never started, so it has no logs" in info, info
    assert "replica logs" not in info, info
    assert "Check deploy_metadata (command, port)" not in info, info


def test_each_stopped_replica_is_logged_once_after_a_delete(
    server: MoorageServer, alice: ApiClient
) -> None:
    replicas: list[str] = []
    for n in range(3):
        with _endpoint(alice, f"deleted-{n}") as service_id:
            endpoint = alice.wait_status(service_id, "available", timeout=90)
            replicas += [r["replica_id"] for r in endpoint["endpoint_metadata"]["replicas"]]

    def all_stopped() -> bool:
        return all(f"replica {r} (revision 1) stopped" in server.log() for r in replicas)

    wait_for(all_stopped, timeout=60, what="each replica's stop logged")
    time.sleep(3)  # a second stop would come within a pass or two
    lines = [line for line in server.log().splitlines() if "moorage.lifecycle" in line]
    for replica_id in replicas:
        stops = [line for line in lines if replica_id in line and ") stopped" in line]
        assert len(stops) == 1, stops
