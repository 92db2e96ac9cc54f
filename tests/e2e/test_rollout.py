"""A rollout under real load, with real replicas on each runtime: not one request fails.

The order of a pass, rollback and probe failures are tested in process
(tests/integration/test_reconciler.py); this is what only real processes and
containers, a real gateway and real clients show together."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from tests.support.server import ApiClient, wait_for

RUNTIMES = ["process", "docker", "ray"]


class LoadDuringRollout:
    """Clients calling the endpoint non-stop, some with slow requests, recording every answer."""

    def __init__(self, client: ApiClient, service_id: str, workers: int = 4) -> None:
        self.url = f"{client.base}/inference-api/v1/inference_service/{service_id}"
        self.headers = client.headers
        self.stop = threading.Event()
        self.results: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._futures = [self._pool.submit(self._run, i) for i in range(workers)]

    def _run(self, worker: int) -> None:
        session = requests.Session()
        deadline = time.monotonic() + 120  # bounded even if the test forgets to stop it
        while not self.stop.is_set() and time.monotonic() < deadline:
            path = "/slow?seconds=0.8" if worker == 0 else "/version"
            try:
                response = session.get(self.url + path, headers=self.headers, timeout=30)
                outcome = (response.status_code, response.text)
            except requests.RequestException as exc:
                outcome = (0, repr(exc))
            with self._lock:
                self.results.append(outcome)

    def finish(self) -> list[tuple[int, str]]:
        self.stop.set()
        for future in self._futures:
            future.result(timeout=60)
        self._pool.shutdown()
        return self.results


def _versions(results: list[tuple[int, str]]) -> Counter[str]:
    return Counter(
        text.split('"version":"')[1].split('"')[0] for code, text in results if '"version"' in text
    )


def _revisions(endpoint: dict[str, Any]) -> set[int]:
    return {r["revision"] for r in endpoint["endpoint_metadata"]["replicas"]}


def test_a_new_revision_rolls_out_with_zero_failed_requests(alice: ApiClient) -> None:
    service_id = alice.create(
        name="rolling",
        resource_metadata={"target_instance_number": 2},
        deploy_metadata={"env": {"APP_VERSION": "1"}},
    )["service_id"]
    alice.wait_status(service_id, "available")
    load = LoadDuringRollout(alice, service_id)
    try:
        time.sleep(1)
        updated = alice.call(
            "PUT",
            f"/v1/inference-service/{service_id}",
            json={"deploy_metadata": {"env": {"APP_VERSION": "2"}}},
        )
        assert updated.status_code == 200, updated.text
        assert updated.json()["deploy_metadata"]["revision"] == 2

        def rolled_out() -> bool:
            endpoint = alice.get(service_id)
            return endpoint["status"] == "available" and _revisions(endpoint) == {2}

        wait_for(rolled_out, timeout=90, what="every replica on revision 2")
        time.sleep(1)
    finally:
        results = load.finish()
    failed = [r for r in results if r[0] != 200]
    assert failed == [], failed[:5]
    versions = _versions(results)
    assert versions["1"] > 0
    assert versions["2"] > 0
    assert alice.gateway(service_id, "version").json()["version"] == "2"
    alice.call("DELETE", f"/v1/inference-service/{service_id}")
