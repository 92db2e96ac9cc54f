"""The gateway's route table, built from endpoints, replicas and token hashes."""

from __future__ import annotations

from moorage.gateway.routes import ReplicaRoute, RouteTable, RouteTableHolder, build_route_table
from moorage.models.endpoints import DesiredState
from moorage.models.replicas import ReplicaState
from tests.unit.builders import at, failing_replica, make_endpoint, make_replica

TOKENS = {"user-1": frozenset({"hash-1a", "hash-1b"}), "user-2": frozenset({"hash-2"})}


def test_only_ready_replicas_receive_traffic() -> None:
    endpoint = make_endpoint()
    replicas = [
        make_replica("ready", address="127.0.0.1:9001"),
        make_replica("starting", state=ReplicaState.STARTING, address="127.0.0.1:9002"),
        make_replica("requested", state=ReplicaState.REQUESTED),
        failing_replica("failed", failures=1),
        make_replica("stopped", state=ReplicaState.STOPPED),
    ]

    table = build_route_table([endpoint], replicas, TOKENS)

    assert table.endpoints["ep-1"].replicas == (ReplicaRoute("ready", "127.0.0.1:9001"),)


def test_ready_replica_without_an_address_is_not_routed() -> None:
    endpoint = make_endpoint()
    replica = make_replica("r-1", address="")

    table = build_route_table([endpoint], [replica], TOKENS)

    assert table.endpoints["ep-1"].replicas == ()


def test_ready_replicas_of_every_revision_serve_during_a_rollout() -> None:
    endpoint = make_endpoint(revision=2)
    replicas = [
        make_replica("old", revision=1, address="127.0.0.1:9001"),
        make_replica("new", revision=2, address="127.0.0.1:9002"),
    ]

    table = build_route_table([endpoint], replicas, TOKENS)

    assert {r.replica_id for r in table.endpoints["ep-1"].replicas} == {"old", "new"}


def test_each_endpoint_gets_only_its_own_replicas() -> None:
    endpoints = [make_endpoint("ep-1"), make_endpoint("ep-2", user_id="user-2")]
    replicas = [
        make_replica("r-1", endpoint_id="ep-1", address="127.0.0.1:9001"),
        make_replica("r-2", endpoint_id="ep-2", address="127.0.0.1:9002"),
    ]

    table = build_route_table(endpoints, replicas, TOKENS)

    assert table.endpoints["ep-1"].replicas == (ReplicaRoute("r-1", "127.0.0.1:9001"),)
    assert table.endpoints["ep-2"].replicas == (ReplicaRoute("r-2", "127.0.0.1:9002"),)


def test_endpoint_without_ready_replicas_is_still_routed_so_callers_get_a_clear_503() -> None:
    table = build_route_table([make_endpoint()], [], TOKENS)

    assert table.endpoints["ep-1"].replicas == ()
    assert table.endpoints["ep-1"].status_hint == "running"


def test_stopped_endpoint_is_routed_with_a_hint_that_it_is_stopped() -> None:
    endpoint = make_endpoint(desired_state=DesiredState.STOPPED)

    table = build_route_table([endpoint], [], TOKENS)

    assert table.endpoints["ep-1"].status_hint == "stopped"


def test_deleted_endpoint_is_not_routed_even_while_replicas_still_run() -> None:
    endpoint = make_endpoint(deleted_at=at(10))

    table = build_route_table([endpoint], [make_replica("r-1")], TOKENS)

    assert "ep-1" not in table.endpoints


def test_only_the_owners_tokens_may_call_an_endpoint() -> None:
    endpoints = [make_endpoint("ep-1", user_id="user-1"), make_endpoint("ep-2", user_id="user-2")]

    table = build_route_table(endpoints, [], TOKENS)

    assert table.endpoints["ep-1"].owner_token_hashes == frozenset({"hash-1a", "hash-1b"})
    assert table.endpoints["ep-2"].owner_token_hashes == frozenset({"hash-2"})


def test_endpoint_of_a_user_without_tokens_has_no_owner_token() -> None:
    endpoint = make_endpoint(user_id="user-without-tokens")

    table = build_route_table([endpoint], [], TOKENS)

    assert table.endpoints["ep-1"].owner_token_hashes == frozenset()


def test_every_active_token_is_known_even_for_users_without_endpoints() -> None:
    table = build_route_table([], [], TOKENS)

    assert table.known_token_hashes == frozenset({"hash-1a", "hash-1b", "hash-2"})


def test_no_tokens_means_no_known_tokens() -> None:
    table = build_route_table([make_endpoint()], [], {})

    assert table.known_token_hashes == frozenset()


def test_holder_starts_empty_and_swaps_whole_tables() -> None:
    holder = RouteTableHolder()
    table = build_route_table([make_endpoint()], [make_replica("r-1")], TOKENS)

    assert holder.current == RouteTable.empty()
    assert dict(holder.current.endpoints) == {}

    holder.swap(table)

    assert holder.current is table
