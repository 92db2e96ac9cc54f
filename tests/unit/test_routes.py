"""The gateway's route table, built from endpoints, replicas and token hashes."""

from __future__ import annotations

import asyncio

import pytest

from moorage.errors import MoorageError
from moorage.models.endpoints import DesiredState
from moorage.models.replicas import ReplicaState
from moorage.routing.codec import table_from_json, table_to_json
from moorage.routing.holder import RouteTableHolder
from moorage.routing.table import EndpointRoute, ReplicaRoute, RouteTable, build_route_table
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


# -- taking replicas out of rotation ---------------------------------------------------


def two_endpoint_table() -> RouteTable:
    endpoints = [make_endpoint("ep-1"), make_endpoint("ep-2", user_id="user-2")]
    replicas = [
        make_replica("r-1a", endpoint_id="ep-1", address="127.0.0.1:9001"),
        make_replica("r-1b", endpoint_id="ep-1", address="127.0.0.1:9002"),
        make_replica("r-2", endpoint_id="ep-2", address="127.0.0.1:9003"),
    ]
    return build_route_table(endpoints, replicas, TOKENS)


def test_replicas_about_to_stop_are_taken_out_of_rotation() -> None:
    table = two_endpoint_table().without(frozenset({"r-1a", "r-2"}))

    assert table.endpoints["ep-1"].replicas == (ReplicaRoute("r-1b", "127.0.0.1:9002"),)
    assert table.endpoints["ep-2"].replicas == ()


def test_taking_replicas_out_keeps_endpoints_owners_and_tokens() -> None:
    before = two_endpoint_table()

    after = before.without(frozenset({"r-1a", "r-1b", "r-2"}))

    assert set(after.endpoints) == {"ep-1", "ep-2"}
    assert after.endpoints["ep-1"].owner_token_hashes == before.endpoints["ep-1"].owner_token_hashes
    assert after.endpoints["ep-1"].status_hint == before.endpoints["ep-1"].status_hint
    assert after.known_token_hashes == before.known_token_hashes


def test_taking_replicas_out_leaves_the_published_table_untouched() -> None:
    """Requests in flight read the table they started with; it must not change under them."""
    before = two_endpoint_table()

    before.without(frozenset({"r-1a"}))

    assert [r.replica_id for r in before.endpoints["ep-1"].replicas] == ["r-1a", "r-1b"]


def test_taking_out_unknown_replicas_changes_nothing() -> None:
    before = two_endpoint_table()

    assert before.without(frozenset({"not-routed"})) == before


def test_replicas_that_just_passed_their_probe_join_before_the_store_says_so() -> None:
    before = two_endpoint_table()
    joining = [
        make_replica("r-2b", endpoint_id="ep-2", state=ReplicaState.STARTING, address="h:2"),
        make_replica("r-1a", endpoint_id="ep-1", state=ReplicaState.STARTING, address="h:9"),
        make_replica("no-address", endpoint_id="ep-2", state=ReplicaState.STARTING, address=""),
        make_replica("unrouted", endpoint_id="ep-9", state=ReplicaState.STARTING, address="h:3"),
    ]

    after = before.with_ready(joining)

    assert [r.replica_id for r in after.endpoints["ep-2"].replicas] == [
        *(r.replica_id for r in before.endpoints["ep-2"].replicas),
        "r-2b",
    ]
    assert after.endpoints["ep-1"].replicas == before.endpoints["ep-1"].replicas  # no twice
    assert set(after.endpoints) == set(before.endpoints)
    assert after.known_token_hashes == before.known_token_hashes
    assert before.with_ready([]) is before


# -- waiting for a new endpoint's route -------------------------------------------------


def test_route_already_in_the_table_is_returned_without_waiting() -> None:
    holder = RouteTableHolder()
    holder.swap(build_route_table([make_endpoint()], [], TOKENS))

    route = asyncio.run(holder.wait_for_route("ep-1", timeout_s=0))

    assert route is not None
    assert route.service_id == "ep-1"


def test_request_for_a_just_created_endpoint_gets_the_route_of_the_next_table() -> None:
    holder = RouteTableHolder()
    unrelated = build_route_table([make_endpoint("ep-other")], [], TOKENS)
    with_route = build_route_table([make_endpoint()], [make_replica("r-1")], TOKENS)

    async def scenario() -> EndpointRoute | None:
        waiting = asyncio.create_task(holder.wait_for_route("ep-1", timeout_s=30))
        await asyncio.sleep(0)
        holder.swap(unrelated)  # a table without it: keep waiting
        await asyncio.sleep(0)
        assert not waiting.done()
        holder.swap(with_route)
        return await asyncio.wait_for(waiting, timeout=5)

    route = asyncio.run(scenario())

    assert route is with_route.endpoints["ep-1"]


def test_waiting_for_an_endpoint_that_never_appears_gives_up_after_the_timeout() -> None:
    holder = RouteTableHolder()

    async def scenario() -> tuple[EndpointRoute | None, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        route = await holder.wait_for_route("ep-missing", timeout_s=0.05)
        return route, loop.time() - started

    route, waited = asyncio.run(scenario())

    assert route is None
    assert 0.04 <= waited < 2


def test_a_stopped_hint_survives_the_trip_to_a_standalone_gateway() -> None:
    table = build_route_table([make_endpoint(desired_state=DesiredState.STOPPED)], [], TOKENS)

    copy = table_from_json(table_to_json(table), "control plane")

    assert copy.endpoints["ep-1"].status_hint is DesiredState.STOPPED


def test_a_route_file_with_an_unknown_status_is_refused_naming_the_field() -> None:
    body = {"endpoints": [{"service_id": "ep", "tokens": ["t"], "status": "paused"}]}

    with pytest.raises(
        MoorageError, match=r"routes.json: endpoints\[0\].status: should be 'running'"
    ):
        table_from_json(body, "routes.json")
