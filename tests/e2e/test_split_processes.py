"""moorage as separate processes over one PostgreSQL: two ``moorage api``, two
``moorage controller`` (one leads) and a ``moorage gateway``; a leader killed under
load, and a leader frozen until it is deposed.

What a user checks: an endpoint created through one API is seen through the other and
served through the gateway; when the leading controller dies, a standby takes over
within 5 s, no replica runs twice and every create or scale reaches its count; a
frozen leader that wakes up after a takeover writes nothing more and says it lost the
lease.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from moorage.store.db import Database
from tests.conftest import database
from tests.support.server import ApiClient, MoorageServer, free_port, wait_for
from tests.support.split import (
    ADMIN_TOKEN,
    REPLICA_COMMAND,
    Part,
    Split,
    running_per_endpoint,
    running_replicas,
)
from tests.support.watching import DuplicateWatch

pytestmark = pytest.mark.postgres

TAKEOVER_LIMIT_S = 5.0


@pytest.fixture
def split(tmp_path: Path) -> Iterator[Split]:
    with database("postgresql", tmp_path) as url:
        installation = Split(tmp_path / "home", url)
        installation.home.mkdir()
        try:
            yield installation
        finally:
            installation.close()


def _create(api: ApiClient, name: str, count: int = 1) -> str:
    created = api.create(
        name=name,
        resource_metadata={"target_instance_number": count},
        deploy_metadata={"command": REPLICA_COMMAND},
    )
    return str(created["service_id"])


def _scale(api: ApiClient, service_id: str, count: int) -> None:
    body = {"resource_metadata": {"target_instance_number": count}}
    answer = api.call("PUT", f"/v1/inference-service/{service_id}", json=body)
    assert answer.status_code == 200, answer.text


def _settled(api: ApiClient, wanted: dict[str, int], home: Path) -> bool:
    """Every endpoint has exactly its wanted replicas, ready, and that many run."""
    running = running_per_endpoint(home)
    for service_id, count in wanted.items():
        endpoint = api.get(service_id)
        replicas = endpoint["endpoint_metadata"]["replicas"]
        live = [r for r in replicas if r["state"] not in ("stopped", "failed")]
        if endpoint["endpoint_metadata"]["ready_replicas"] != count or len(live) != count:
            return False
        if running.get(service_id, 0) != count:
            return False
    return True


def _start(split: Split, *, apis: int = 1, controllers: int = 2) -> tuple[list[Part], list[Part]]:
    api_parts = [split.api(f"api{i + 1}") for i in range(apis)]
    for part in api_parts:
        split.wait_answering(part)
    controller_parts = [split.controller(f"c{i + 1}") for i in range(controllers)]
    return api_parts, controller_parts


def test_two_apis_a_controller_and_a_gateway_serve_one_endpoint(split: Split) -> None:
    (api1, api2), (controller,) = _start(split, apis=2, controllers=1)
    split.leader(controller)
    one, other = split.client(api1), split.client(api2)
    service_id = _create(one, "through-api1")
    assert other.get(service_id)["name"] == "through-api1"
    other.wait_status(service_id, "available", timeout=90)
    gateway = split.gateway("gw", f"http://127.0.0.1:{api2.port}")
    split.wait_answering(gateway)
    gateway_client = ApiClient(f"http://127.0.0.1:{gateway.port}", one.token)
    wait_for(
        lambda: gateway_client.gateway(service_id).status_code == 200,
        timeout=30,
        what="the gateway to serve the endpoint",
    )

    # No API runs a gateway: the traffic both answer is what the gateway reported.
    # The API's own port answers the control API only, and says where inference goes.
    elsewhere = one.gateway(service_id)
    assert elsewhere.status_code == 404
    assert "moorage gateway" in elsewhere.json()["message"]

    def reported() -> bool:
        return all(_traffic(api, service_id)["responses_total"] >= 1 for api in (one, other))

    wait_for(reported, timeout=30, what="the gateway's report in both APIs' traffic")


def test_a_standby_takes_over_a_killed_leader_under_creates_and_scales(split: Split) -> None:
    (api,), controllers = _start(split)
    client = split.client(api)
    first = split.leader(*controllers)
    standby = next(c for c in controllers if c is not first)
    wait_for(lambda: "standing by" in standby.log(), timeout=30, what="a standby")
    before = [_create(client, f"before-{i}") for i in range(2)]
    wanted = dict.fromkeys(before, 1)
    wait_for(lambda: _settled(client, wanted, split.home), timeout=90, what="first endpoints")

    errors: list[BaseException] = []
    streaming = threading.Event()

    def stream() -> None:
        """Creates and scales (1 <-> 2), a call every 0.3 s, until told to stop."""
        try:
            n = 0
            while not streaming.is_set():
                n += 1
                if n % 2 and n < 6:  # three creates; the CPU flavor runs eight replicas
                    wanted[_create(client, f"during-{n}")] = 1
                else:
                    service_id = before[n % len(before)]
                    count = 1 + (wanted[service_id] % 2)  # 1 <-> 2
                    _scale(client, service_id, count)
                    wanted[service_id] = count
                time.sleep(0.3)
        except BaseException as exc:
            errors.append(exc)

    with DuplicateWatch(split.home) as watch:
        worker = threading.Thread(target=stream, daemon=True)
        worker.start()
        try:
            time.sleep(1.5)
            killed_at = time.monotonic()
            first.send(signal.SIGKILL)
            split.leader(standby, timeout=TAKEOVER_LIMIT_S + 5)
            takeover_s = time.monotonic() - killed_at
            print(f"\ntakeover after SIGKILL of the leader: {takeover_s:.2f} s")
            time.sleep(2)
        finally:
            streaming.set()
            worker.join(timeout=30)
        assert not errors, errors
        wait_for(
            lambda: _settled(client, wanted, split.home),
            timeout=120,
            what=f"every endpoint at its count {wanted}",
        )
    assert takeover_s <= TAKEOVER_LIMIT_S, takeover_s
    assert watch.duplicates == {}, watch.duplicates
    assert "adopted" in standby.log()


def test_a_frozen_leader_is_deposed_and_writes_nothing_after_it_wakes(split: Split) -> None:
    (api,), controllers = _start(split)
    client = split.client(api)
    frozen = split.leader(*controllers)
    standby = next(c for c in controllers if c is not frozen)
    wait_for(lambda: "standing by" in standby.log(), timeout=30, what="a standby")
    service_id = _create(client, "fenced")
    wait_for(lambda: _settled(client, {service_id: 1}, split.home), timeout=90, what="a replica")

    frozen.send(signal.SIGSTOP)
    split.leader(standby, timeout=TAKEOVER_LIMIT_S + 5)
    _scale(client, service_id, 2)  # work for the new leader, while the old one sleeps
    before_waking = len(frozen.log())
    frozen.send(signal.SIGCONT)
    wait_for(lambda: "lost the lease" in frozen.log(), timeout=15, what="the old leader's line")
    wait_for(lambda: _settled(client, {service_id: 2}, split.home), timeout=90, what="2 replicas")

    woken = frozen.log()[before_waking:]
    lost = [line for line in woken.splitlines() if "lost the lease" in line]
    assert len(lost) == 1, woken
    assert f"controller {frozen.name} lost the lease" in lost[0]
    assert "replicas keep running" in lost[0]
    # Every replica line is logged after its write committed: none after waking means the
    # old leader changed nothing (its transactions were refused, or never begun).
    assert "moorage.lifecycle" not in woken, woken
    assert frozen.alive()
    assert f"standing by: {standby.name} leads" in woken
    store = Database(split.database_url)
    try:
        assert _lease(store) == (standby.name, 2)
    finally:
        store.dispose()
    assert all(len(pids) == 1 for pids in running_replicas(split.home).values())


def _lease(store: Database) -> tuple[str, int]:
    with store.session() as session:
        row = session.execute(text("SELECT holder, epoch FROM controller_leases")).one()
    return str(row[0]), int(row[1])


def test_serve_and_a_controller_never_both_lead_one_store(split: Split) -> None:
    """``moorage serve`` runs a controller too: it refuses a store another controller
    leads, and a controller started beside a running serve stands by."""
    controller = split.controller("c1")
    split.leader(controller)
    refused = MoorageServer(
        home=split.home / "serve", database_url=split.database_url, admin_token=ADMIN_TOKEN
    )
    with pytest.raises(AssertionError, match="controller c1 leads this store"):
        refused.start()
    controller.stop()
    serving = MoorageServer(
        home=split.home / "serve", database_url=split.database_url, admin_token=ADMIN_TOKEN
    ).start()
    try:
        standby = split.controller("c2")
        wait_for(lambda: "standing by: serve:" in standby.log(), timeout=30, what="a standby")
        assert "is the leader" not in standby.log()
    finally:
        serving.stop()
    split.leader(standby, timeout=15)  # serve released the lease as it stopped


def test_a_serve_paused_past_its_lease_stops_acting_and_leaves_its_replicas(split: Split) -> None:
    """A serve frozen (SIGSTOP) past its lease while a controller stands by: the
    controller takes over, and serve, once awake, stops acting as a controller and
    exits without stopping the replicas, which the new leader keeps."""
    serving = MoorageServer(
        home=split.home,
        database_url=split.database_url,
        admin_token=ADMIN_TOKEN,
        extra_env={"MOORAGE_SANDBOX": "off", "MOORAGE_STOP_GRACE_S": "3"},
    ).start()
    try:
        client = ApiClient(serving.url, ADMIN_TOKEN)
        service_id = client.create(name="kept", deploy_metadata={"command": REPLICA_COMMAND})[
            "service_id"
        ]
        client.wait_status(service_id, "available", timeout=60)
        before = running_replicas(split.home)
        assert len(before) == 1
        standby = split.controller("c2")
        wait_for(lambda: "standing by: serve:" in standby.log(), timeout=30, what="a standby")
        assert serving.process is not None
        serving.process.send_signal(signal.SIGSTOP)
        try:
            split.leader(standby, timeout=30)
        finally:
            serving.process.send_signal(signal.SIGCONT)
        wait_for(
            lambda: serving.process is not None and serving.process.poll() is not None,
            timeout=30,
            what="serve to exit once deposed",
        )
        log = serving.log()
        assert "moorage serve stops:" in log
        assert "its replicas keep running for the controller that leads" in log
        wait_for(lambda: "adopted" in standby.log(), timeout=30, what="c2 to adopt the replica")
        assert running_replicas(split.home) == before, "serve stopped or restarted a replica"
    finally:
        serving.stop()


def _traffic(api: ApiClient, service_id: str) -> dict[str, Any]:
    answer = api.call("GET", f"/v1/inference-service/{service_id}/traffic")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_processes_started_at_once_on_a_fresh_store_make_one_admin_token(split: Split) -> None:
    """Two APIs and a controller start together against an empty PostgreSQL, without a
    configured token: one migrates and makes the token while the others wait, and all
    of them then serve with it."""
    parts = [
        Part(name, args, split.env(), split.home / f"{name}.log", port)
        for name, args, port in (
            ("api1", ["api"], free_port()),
            ("api2", ["api"], free_port()),
            ("c1", ["controller"], None),
        )
    ]
    for part in parts:
        part.env.pop("MOORAGE_ADMIN_TOKEN")
        if part.port is not None:
            part.env["MOORAGE_PORT"] = str(part.port)
        split.parts.append(part)
    for part in parts:
        part.start()
    api1, api2, controller = parts
    split.wait_answering(api1)
    split.wait_answering(api2)
    split.leader(controller)
    token = (split.home / "admin-token").read_text().strip()
    printed = [p.name for p in parts if token in p.log()]
    assert len(printed) == 1, printed  # made, and shown, once
    for api in (api1, api2):
        flavors = ApiClient(f"http://127.0.0.1:{api.port}", token).call(
            "GET", "/v1/inference-service/flavor"
        )
        assert flavors.status_code == 200, flavors.text
    assert "Traceback" not in api1.log() + api2.log() + controller.log()
