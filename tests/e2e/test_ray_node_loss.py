"""A Ray node dies under load: its replicas leave the rotation, the controller replaces
them on the surviving node, no idempotent request fails at the gateway (it retries
them on a surviving replica), and the lost replicas are billed up to when Ray said
their node died.

The cluster is this test's own (a head and two nodes of the CPU flavor), so killing a
node takes nothing from other tests. A node is killed as a machine dies: its raylet
and workers at once (``ray_cluster.Node.kill``); the replica's own processes, which
run in sessions of their own, are ended by the reaper its actor started.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from moorage.store.db import Database
from moorage.store.tables import UsageRecordRow
from tests.support import ray_cluster
from tests.support.components import need
from tests.support.server import ApiClient, MoorageServer, new_user_token, wait_for
from tests.support.watching import GetLoad, replicas_under

pytestmark = pytest.mark.ray

ENDPOINT_ENV = "MOORAGE_ENDPOINT_ID"
REPLACE_TIMEOUT_S = 90.0


def _replicas_on(node: ray_cluster.Node, service_id: str) -> dict[str, set[int]]:
    """The endpoint's replicas whose processes run under ``node``'s, with their pids."""
    return replicas_under(node.process.pid, service_id)


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


def _available(client: ApiClient) -> int:
    flavors = client.call("GET", "/v1/inference-service/flavor").json()["flavor_list"]
    return int(flavors[0]["available_num"])


def _utc(shown: str) -> datetime:
    return datetime.strptime(shown, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


@pytest.fixture
def cluster() -> Iterator[ray_cluster.Cluster]:
    try:
        ray_cluster.ray_command()
    except ray_cluster.RayUnavailable as exc:
        need("ray", str(exc))
    with ray_cluster.own_cluster() as own:
        own.start_head({})
        own.add_node("a", {ray_cluster.CPU_FLAVOR_RESOURCE: 4})
        own.add_node("b", {ray_cluster.CPU_FLAVOR_RESOURCE: 4})
        yield own


@pytest.fixture
def ray_server(
    cluster: ray_cluster.Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MoorageServer]:
    home = tmp_path_factory.mktemp("home")  # short: sandboxes' socket paths are bounded
    running = MoorageServer(
        home=home,
        database_url=f"sqlite:///{home / 'moorage.db'}",
        runtime="ray",
        extra_env={
            "MOORAGE_RAY_ADDRESS": cluster.address,
            "MOORAGE_RAY_NODE_IP": ray_cluster.NODE_IP,
            **ray_cluster.LOOPBACK_ENV,
            # Checkpoints often, so the lost replica's usage is closed before the end.
            "MOORAGE_METERING_INTERVAL_S": "2",
        },
    ).start()
    try:
        yield running
    finally:
        running.stop()


def test_a_lost_nodes_replicas_are_replaced_and_no_request_fails(
    cluster: ray_cluster.Cluster, ray_server: MoorageServer
) -> None:
    admin = ApiClient(ray_server.url, ray_server.admin_token or "")
    alice = ApiClient(ray_server.url, new_user_token(admin, "alice"))
    service_id = alice.create(name="spread", resource_metadata={"target_instance_number": 2})[
        "service_id"
    ]
    wait_for(
        lambda: alice.get(service_id)["endpoint_metadata"]["ready_replicas"] == 2,
        what="two ready replicas",
        timeout=90,
    )
    node_a, node_b = cluster.nodes[1], cluster.nodes[2]
    wait_for(
        lambda: len(_replicas_on(node_a, service_id)) == len(_replicas_on(node_b, service_id)) == 1,
        what="a replica on each node (Ray spreads an endpoint's replicas)",
        timeout=30,
    )
    ((lost_replica, lost_pids),) = _replicas_on(node_a, service_id).items()
    # Two nodes of 4 slots each, 2 of them held: what the flavor list says.
    wait_for(lambda: _available(alice) == 6, what="6 free slots of the cluster's 8", timeout=30)

    load = GetLoad(alice, service_id).start()
    try:
        wait_for(lambda: load.answered >= 20, what="load to flow", timeout=30)
        killed_at = datetime.now(UTC)
        started = time.monotonic()
        node_a.kill()
        wait_for(
            lambda: not _alive(lost_pids),
            what="the lost node's replica processes to end (their reaper)",
            timeout=30,
        )
        wait_for(
            lambda: (
                len(_replicas_on(node_b, service_id)) == 2
                and alice.get(service_id)["endpoint_metadata"]["ready_replicas"] == 2
            ),
            what="two ready replicas again, on the surviving node",
            timeout=REPLACE_TIMEOUT_S,
        )
        replaced_s = time.monotonic() - started
        wait_for(lambda: _available(alice) == 2, what="the lost node's slots gone", timeout=30)
        answered_before = load.answered
        wait_for(lambda: load.answered >= answered_before + 20, what="load after", timeout=30)
    finally:
        load.stop()
    print(f"replicas of a lost node replaced in {replaced_s:.1f} s; {load.answered} requests")
    assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}"

    events = alice.call("GET", f"/v1/inference-service/{service_id}/events").json()["event_list"]
    lost = [e for e in events if e["kind"] == "failed"]
    assert [e["replica_id"] for e in lost] == [lost_replica], events
    assert "Ray" in lost[0]["detail"], lost[0]
    failed_at = _utc(lost[0]["time"])
    assert (failed_at - killed_at).total_seconds() <= 20, (failed_at, killed_at)

    alice.call("POST", f"/v1/inference-service/{service_id}/stop")
    ray_server.stop()
    db = Database(ray_server.database_url)
    try:
        with db.session() as session:
            rows = session.scalars(
                select(UsageRecordRow).where(UsageRecordRow.replica_id == lost[0]["replica_id"])
            ).all()
    finally:
        db.dispose()
    # The replica keeps its id and is started again elsewhere: its first life is billed
    # up to when it was found lost, and nothing between then and its second start.
    again = min(
        _utc(e["time"])
        for e in events
        if e["kind"] == "started"
        and e["replica_id"] == lost_replica
        and _utc(e["time"]) >= failed_at
    )
    assert rows, "the lost replica was billed for its life"
    assert any(r.period_end.replace(tzinfo=UTC) == failed_at for r in rows), rows
    for row in rows:
        start, end = row.period_start.replace(tzinfo=UTC), row.period_end.replace(tzinfo=UTC)
        assert end <= failed_at or start >= again, (start, end, failed_at, again)
