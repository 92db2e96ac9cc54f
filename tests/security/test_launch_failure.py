"""A replica the runtime cannot launch fails once, with a message, and loops nothing.

The API now refuses a NUL byte in ``env``, but a store may still hold one (written
before that check existed). The process runtime then raises while launching the
replica (``ValueError: embedded null byte``), which used to leave the endpoint
``initializing`` forever with a traceback every pass. Whatever a runtime raises
while launching must become that replica's recorded failure: the endpoint goes
``unavailable`` saying why, the server logs it once, and everyone else is served.
"""

from __future__ import annotations

import dataclasses
import re

from moorage.store.db import Database
from moorage.store.endpoints import EndpointRepository
from tests.support.server import ApiClient, MoorageServer, wait_for

NORMAL_START_S = 45.0


def _put_nul_in_env(database_url: str, service_id: str) -> None:
    """What an old store may hold: an env value with a NUL byte, written straight in."""
    db = Database(database_url)
    try:
        with db.session() as session:
            repository = EndpointRepository(session)
            endpoint = repository.get_live(service_id)
            assert endpoint is not None
            deploy = dataclasses.replace(endpoint.deploy, env={"BAD": "before\x00after"})
            repository.save(dataclasses.replace(endpoint, deploy=deploy))
    finally:
        db.dispose()


def test_a_replica_the_runtime_cannot_launch_fails_once_and_others_are_served(
    server: MoorageServer, alice: ApiClient, bob: ApiClient
) -> None:
    broken = alice.create(name="nul-in-env")["service_id"]
    try:
        assert alice.call("POST", f"/v1/inference-service/{broken}/stop").status_code == 200
        alice.wait_status(broken, "stopped")
        _put_nul_in_env(server.database_url, broken)
        assert alice.call("POST", f"/v1/inference-service/{broken}/start").status_code == 200

        endpoint = alice.wait_status(broken, "unavailable", timeout=30)
        assert "embedded null byte" in endpoint["status_info"], endpoint

        # It is retried with backoff (1 s, 2 s, ...): wait for a few tries, then look at
        # the log: one line about it, and no traceback.
        def retried() -> bool:
            info = str(alice.get(broken)["status_info"])
            found = re.search(r"failed (\d+) time\(s\)", info)
            return found is not None and int(found.group(1)) >= 3

        wait_for(retried, timeout=30, what="the broken replica to be retried three times")

        service_id = bob.create(name="bob-beside-broken")["service_id"]
        try:
            bob.wait_status(service_id, "available", timeout=NORMAL_START_S)
            assert bob.gateway(service_id).status_code == 200
        finally:
            bob.call("DELETE", f"/v1/inference-service/{service_id}")

        # A traceback would carry the message too: one line in all, naming the endpoint.
        about_it = [line for line in server.log().splitlines() if "embedded null byte" in line]
        assert len(about_it) == 1, "\n".join(about_it)
        assert broken in about_it[0]
    finally:
        alice.call("DELETE", f"/v1/inference-service/{broken}")
